import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { request } from 'undici'
import { ROOT } from '../helpers/process.js'
import { SANDBOX_TOKEN, startSandbox } from '../helpers/sandbox.js'

// The console in a real browser: Debian's chromium driven by playwright-core (no browser
// download). .ci/run installs chromium; elsewhere the test skips with a message.
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = path.join(ROOT, '.tap', 'artifacts')

async function planner (admin: string): Promise<{ paused: boolean }> {
  return await (await request(`${admin}/v1/planner`)).body.json() as { paused: boolean }
}

t.test('the web console: fleet, health chart, read-only without the token, actions with it', { skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)` }, async t => {
  const { chromium } = await import('playwright-core')
  // memory-leak: gw1 gets simulated telemetry, so the health model scores it and the chart has points.
  const sb = await startSandbox(t, ['--scenario', 'memory-leak', '--scenario-speed', '10'])
  for (let i = 0; i < 6; i++) {
    const put = await request(`${sb.proxy}/vol${i % 2}/blk${i}`, { method: 'PUT', body: `block ${i}` })
    await put.body.dump()
    const get = await request(`${sb.proxy}/vol${i % 2}/blk${i}`, { headers: { 'x-forwarded-for': '127.0.1.7' } })
    await get.body.dump()
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1400, height: 1600 } })
  const errors: string[] = []
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('pageerror', e => { errors.push(`pageerror: ${e.message}`) })
  const dialogs: string[] = []
  page.on('dialog', d => { dialogs.push(d.message()); void d.accept() })

  const res = await page.goto(`${sb.admin}/`)
  t.equal(res?.status(), 200)
  t.equal(new URL(page.url()).pathname, '/ui/', '/ redirects to the console')
  await page.waitForSelector('body[data-loaded]', { timeout: 15_000 })
  t.same(await page.$$eval('#fleet .gw', els => els.map(e => e.getAttribute('data-gateway'))), ['gw1', 'gw2', 'gw3'], 'the fleet map shows the three gateways')
  t.same(await page.$$eval('#fleet .site h3', els => els.map(e => e.textContent)), ['site-a', 'site-b', 'site-c'], 'grouped by site')
  await page.waitForSelector('#heatmap tbody tr', { timeout: 15_000 })
  t.ok(await page.$eval('#heatmap', el => el.textContent?.includes('site-b')), 'the affinity heatmap has the sites')
  t.ok(await page.$eval('#hot', el => el.textContent?.includes('vol0/blk0')), 'the hottest blocks are listed')

  // The scenario's telemetry is scored every few seconds: the chart appears as the page polls.
  await page.waitForSelector('.chart[data-gateway="gw1"] canvas', { timeout: 60_000 })
  const box = await page.$eval('.chart[data-gateway="gw1"] canvas', el => el.getBoundingClientRect())
  t.ok(box.width > 100 && box.height > 100, `the health chart is drawn (${box.width}x${box.height})`)
  t.match(await page.$eval('.chart[data-gateway="gw1"]', el => el.textContent), /threshold/, 'the chart has the threshold series')
  t.same(errors, [], 'no console errors while loading and polling')

  // Without the token: the action is asked for, sent, refused, and nothing changes.
  await page.click('#pause')
  await page.waitForSelector('#notice.error', { timeout: 10_000 })
  t.match(await page.textContent('#notice'), /refused \(401\).*FERRY_UNAUTHORIZED/, 'refused without the token')
  t.match(dialogs[0], /Pause all data movement/, 'asked for confirmation first')
  t.equal((await planner(sb.admin)).paused, false, 'data movement still on')
  // (The page's CSP forbids eval, so waits use locators, never string predicates.)
  // The browser reports the 401 itself as a failed resource; that is the only error allowed.
  t.ok(errors.every(e => /401/.test(e)), `only the refused call is an error (${errors.join('; ')})`)

  await page.fill('#token', SANDBOX_TOKEN)
  await page.click('#token-form button[type=submit]')
  await page.click('#pause')
  await page.locator('#notice', { hasText: 'Pause all data movement: done' }).waitFor({ timeout: 10_000 })
  t.equal((await planner(sb.admin)).paused, true, 'paused with the token')
  await page.locator('#movement', { hasText: 'PAUSED' }).waitFor({ timeout: 10_000 })

  // A move through the form, with the token: it shows up in the migrations table.
  // A placed block and a gateway outside its replica set (the sandbox keeps two copies of every
  // block on three gateways); gw1 is the scenario's degrading gateway: never a target.
  let block = ''
  let to = ''
  for (let i = 0; i < 40 && to === ''; i++) {
    const v = await (await request(`${sb.admin}/v1/blocks/vol0/blk${i}`)).body.json() as { location: { gateway: string | null, placed: boolean, members?: string[] } }
    if (!v.location.placed) continue
    const members = v.location.members ?? [v.location.gateway]
    const free = ['gw3', 'gw2'].find(g => !members.includes(g))
    if (free !== undefined) { block = `vol0/blk${i}`; to = free }
  }
  t.not(to, '', `a placed block with a gateway to move to (${block} → ${to})`)
  await page.fill('#move-block', block)
  await page.selectOption('#move-to', to)
  await page.click('#move-form button[type=submit]')
  await page.waitForSelector('#migrations tr[data-migration]', { timeout: 10_000 })
  t.match(await page.textContent('#migrations tbody'), new RegExp(`${block}.*→ ${to}`), 'the move is listed, queued while paused')
  await page.click('#resume')
  // The scenario's evacuation of gw1 adds rows of its own: find ours by block and target.
  const row = page.locator('#migrations tr[data-migration]', { hasText: new RegExp(`${block}.*→ ${to}`) })
  try {
    await row.locator('td', { hasText: /^ok$/ }).waitFor({ timeout: 30_000 })
  } catch (err) {
    t.comment(await page.textContent('#migrations tbody'))
    throw err
  }
  t.match(await row.textContent(), /100%/, 'after resume it completes with full progress')
  t.equal((await planner(sb.admin)).paused, false)

  fs.mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: path.join(ARTIFACTS, 'console.png'), fullPage: true })
})
