import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { sandboxYaml } from '../../bin/sandbox.js'
import { startGateways } from '../helpers/gateway.js'
import { freePort, waitFor } from '../helpers/net.js'
import { ROOT, spawnFerry } from '../helpers/process.js'
import { SANDBOX_TOKEN } from '../helpers/sandbox.js'

// Replica sets in the console, in a real browser (Debian's chromium through playwright-core), against
// `ferry start` on the sandbox's config (R = 2) with the three reference gateways in this process,
// so the test can kill one: the set that loses a member shows under-replicated, the repair shows
// queued while data movement is paused and completes after resume.
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = path.join(ROOT, '.tap', 'artifacts')
const auth = { authorization: `Bearer ${SANDBOX_TOKEN}` }

interface Location { gateway: string, members: string[], inSync: string[] }

t.test('the console shows replica sets, under-replication, repairs and the placement model', { skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)` }, async t => {
  const { chromium } = await import('playwright-core')
  const gws = await startGateways(3)
  t.teardown(gws.stopAll)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-console-replicas-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const [proxyPort, adminPort, dnsPort] = await Promise.all([freePort(), freePort(), freePort()]) as [number, number, number]
  const file = path.join(dir, 'ferry.yaml')
  fs.writeFileSync(file, sandboxYaml({ proxy: proxyPort, admin: adminPort, dns: dnsPort, gateways: gws.urls.map(u => Number(new URL(u).port)) }))
  const ferry = spawnFerry(['start', '--config', file, '--roles', 'proxy,planner'])
  t.teardown(() => ferry.stop('SIGKILL'))
  await waitFor(() => ferry.output().includes('admin listening'), 'the admin listener', 30_000, 100)
  const proxy = `http://127.0.0.1:${proxyPort}`
  const admin = `http://127.0.0.1:${adminPort}`
  const json = async <T>(p: string): Promise<T> => await (await request(`${admin}${p}`)).body.json() as T
  interface PlannerView { leader: boolean, gateways: Array<{ id: string, healthy: boolean }> }
  await waitFor(async () => (await json<PlannerView>('/v1/planner')).leader === true, 'the planner leads', 20_000, 100)

  for (let i = 0; i < 6; i++) {
    const put = await request(`${proxy}/vol1/b${i}`, { method: 'PUT', body: `block ${i}` })
    t.equal(put.statusCode, 201, 'created')
    await put.body.dump()
  }
  const loc = (await json<{ location: Location }>('/v1/blocks/vol1/b0')).location
  t.equal(loc.members.length, 2, `b0 has two copies (${loc.members.join(', ')})`)
  const victim = loc.members.find(m => m !== loc.gateway) as string
  const survivor = loc.gateway
  const spare = ['gw1', 'gw2', 'gw3'].find(g => !loc.members.includes(g)) as string

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1400, height: 2200 } })
  const errors: string[] = []
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('pageerror', e => { errors.push(`pageerror: ${e.message}`) })
  await page.goto(`${admin}/ui/`)
  await page.waitForSelector('body[data-loaded]', { timeout: 15_000 })

  // Every block is on two gateways: the fleet map's per-gateway tally adds up to 12 copies, all in sync.
  await page.locator('#replicas-summary', { hasText: 'replication factor 2' }).waitFor({ timeout: 10_000 })
  const tally = async (): Promise<Array<[number, number]>> => (await page.$$eval('#fleet [data-replicas]', els => els.map(e => e.getAttribute('data-replicas') ?? ''))).map(s => s.split('/').map(Number) as [number, number])
  await waitFor(async () => (await tally()).reduce((n, [m]) => n + m, 0) === 12, 'the per-gateway replica tally', 15_000, 200)
  t.ok((await tally()).every(([m, s]) => m === s), 'every copy in sync')
  t.equal(await page.textContent('[data-count="under-replicated"] b'), '0')

  // Paused, so the repair stays queued where the page can see it; then a member dies and a write demotes it.
  t.equal((await request(`${admin}/v1/planner/pause`, { method: 'POST', headers: auth })).statusCode, 202)
  const gw = gws.gateways[Number(victim.slice(2)) - 1]
  await gw?.kill()
  // Once the planner sees it down, the repair goes to the spare gateway, not back to the dead member.
  await waitFor(async () => (await json<PlannerView>('/v1/planner')).gateways.find(g => g.id === victim)?.healthy === false, `the planner sees ${victim} down`, 30_000, 200)
  const put = await request(`${proxy}/vol1/b0`, { method: 'PUT', body: 'after the loss' })
  t.ok(put.statusCode === 200 || put.statusCode === 204, 'the write is acknowledged by the surviving member')
  await put.body.dump()
  const after = (await json<{ location: Location }>('/v1/blocks/vol1/b0')).location
  t.same(after.inSync, [survivor], `${victim} left the in-sync set`)

  await page.fill('#block-key', 'vol1/b0')
  await page.click('#block-form button[type=submit]')
  try {
    // Down once the proxy's probes or passive checks have noticed (a few hundred ms; more on a loaded machine).
    await page.locator(`#block-replicas tr[data-member="${victim}"]`, { hasText: /out-of-sync.*down/ }).waitFor({ timeout: 30_000 })
  } catch (err) {
    t.comment(`block view: ${await page.textContent('#block-view')}; errors: ${errors.join('; ')}`)
    throw err
  }
  t.pass('the block view shows the dead member out of sync and down')
  t.match(await page.textContent(`#block-replicas tr[data-member="${survivor}"]`), /in-sync.*healthy/)
  t.match(await page.textContent('#block-view [data-in-sync]'), /1 of 2 — under-replicated/)
  await page.locator('[data-count="under-replicated"] b', { hasText: /^[1-9]/ }).waitFor({ timeout: 15_000 })
  await page.locator(`#repairs tr[data-migration]`, { hasText: new RegExp(`vol1/b0.*→ ${spare}`) }).waitFor({ timeout: 15_000 })
  t.match(await page.textContent('#repairs tbody'), /queued/, 'the repair is listed, queued while paused')
  t.match(await page.textContent(`#fleet [data-gateway="${victim}"] [data-replicas]`), /out of sync/, 'the fleet map counts the stale copy')
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-replicas-under.png'), fullPage: true })

  t.equal((await request(`${admin}/v1/planner/resume`, { method: 'POST', headers: auth })).statusCode, 202)
  const row = page.locator('#repairs tr[data-migration]', { hasText: new RegExp(`vol1/b0.*→ ${spare}`) })
  await row.locator('td', { hasText: /^ok$/ }).waitFor({ timeout: 30_000 })
  t.match(await row.textContent(), /100%/, 'the repair completes with full progress')
  await page.locator('#block-view [data-in-sync]', { hasText: '2 of 2' }).waitFor({ timeout: 15_000 })
  t.match(await page.textContent(`#block-replicas tr[data-member="${spare}"]`), /in-sync/, `${spare} holds the new copy`)
  await page.locator('[data-count="under-replicated"] b', { hasText: /^0$/ }).waitFor({ timeout: 15_000 })
  const stored = (await json<{ location: Location }>('/v1/blocks/vol1/b0')).location
  t.ok(stored.inSync.includes(spare) && stored.inSync.includes(survivor), 'the store agrees')

  // The placement model: decisions by origin as /v1/placement counts them, and a retrain's result.
  const retrain = await request(`${admin}/v1/placement/retrain`, { method: 'POST', headers: auth })
  t.equal(retrain.statusCode, 202)
  await retrain.body.dump()
  const placement = await json<{ decisions: { origin: number }, model: { version: number } | null }>('/v1/placement')
  await page.locator('#placement-retrains tbody tr', { hasText: 'operator' }).waitFor({ timeout: 10_000 })
  await page.locator('#placement-decisions tr[data-decision="origin"]', { hasText: String(placement.decisions.origin) }).waitFor({ timeout: 10_000 })
  t.equal(await page.getAttribute('#placement-model [data-model-version]', 'data-model-version'), String(placement.model?.version ?? 0), 'the model version shown is the planner\'s')
  t.ok(placement.decisions.origin >= 6, 'first writes were placed at the writer\'s site')

  await page.screenshot({ path: path.join(ARTIFACTS, 'console-replicas.png'), fullPage: true })
  t.same(errors, [], 'no console errors')
})
