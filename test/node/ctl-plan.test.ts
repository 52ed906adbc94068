import t from 'tap'
import { request } from 'undici'
import { ctl } from '../helpers/ctl.js'
import { waitFor } from '../helpers/net.js'
import { SANDBOX_TOKEN, startSandbox } from '../helpers/sandbox.js'

interface Decision { volume: string, block: string, from: string, to: string, verdict: string, gainMs: number | null, sites: Record<string, number> }
interface Plan { paused: boolean, leader: boolean, rebalancer: { wouldRun: boolean, candidates: number, moves: number, decisions: Decision[] }, repairs: { factor: number, underReplicated: number }, drains: unknown[] }
interface Migration { volume: string, block: string, to: string, reason: string | null, result: string | null }

// `ferry ctl plan` / GET /v1/plan against a sandbox: blocks written at site-a and read from site-c are
// the rebalancer's candidates; the dry run lists them with their inputs and moves nothing; once data
// movement resumes, the real round moves exactly the blocks the plan said, where it said.
t.test('ferry ctl plan: the next round, without running it', async t => {
  const sb = await startSandbox(t)
  const env = { FERRY_ADMIN_URL: sb.admin }
  t.equal((await ctl(['pause'], { ...env, FERRY_ADMIN_TOKEN: SANDBOX_TOKEN })).code, 0)
  // Blocks written at site-a: keep one whose set already has site-c's gw3 in sync and one without
  // (with two copies on three gateways the second member depends on the name).
  const inSync = async (b: string): Promise<string[]> => ((await (await request(`${sb.admin}/v1/blocks/vol1/${b}`)).body.json()) as { location: { inSync: string[] } }).location.inSync
  const withGw3: string[] = []
  const without: string[] = []
  for (let i = 0; i < 40 && (withGw3.length === 0 || without.length === 0); i++) {
    const put = await request(`${sb.proxy}/vol1/b${i}`, { method: 'PUT', body: `bytes of b${i}` })
    await put.body.dump()
    ;((await inSync(`b${i}`)).includes('gw3') ? withGw3 : without).push(`b${i}`)
  }
  const hotBlocks = [withGw3[0] as string, without[0] as string]
  t.ok(hotBlocks.every(b => b !== undefined), `one block with a copy on gw3 (${hotBlocks[0]}), one without (${hotBlocks[1]})`)
  for (let i = 0; i < 30; i++) {
    for (const b of hotBlocks) {
      const get = await request(`${sb.proxy}/vol1/${b}`, { headers: { 'x-forwarded-for': '127.0.2.9' } })
      await get.body.dump()
    }
  }

  // The proxy's access deltas reach the store within a second or two. The rebalancer decides per
  // member (the swap that most cuts the set's read cost): the block without a copy at site-c is a
  // candidate, one member to move to gw3; the one with an in-sync copy on gw3 is not — its site-c
  // readers already read there.
  const plan = await waitFor(async (): Promise<Plan | false> => {
    const p = JSON.parse((await ctl(['plan', '--json'], env)).stdout) as Plan
    return p.rebalancer.decisions.some(d => d.block === hotBlocks[1]) && p
  }, 'the candidate in the plan', 20_000, 250) as Plan
  t.equal(plan.paused, true)
  t.equal(plan.rebalancer.wouldRun, false, 'paused: no round would run')
  const hot = plan.rebalancer.decisions.filter(d => hotBlocks.includes(d.block))
  t.same(hot.map(d => d.block), [hotBlocks[1]], 'the block read from site-c without a copy there is the candidate; the one with a copy on gw3 is not')
  t.equal(plan.rebalancer.decisions.length, 1, 'blocks read only where they are are not either')
  const willMove = hot
  for (const d of hot) {
    t.equal(d.verdict, 'move', `${d.block}: verdict ${d.verdict}`)
    t.equal(d.to, 'gw3', `${d.block}: to site-c's gateway`)
    t.not(d.from, 'gw3')
    t.ok(d.gainMs !== null && d.gainMs > 0, `${d.block}: with the latency saved per access (${d.gainMs} ms)`)
    t.ok((d.sites['site-c'] ?? 0) > (d.sites['site-a'] ?? 0), `${d.block}: and the access scores that decided it (${JSON.stringify(d.sites)})`)
  }
  t.equal(plan.repairs.factor, 2)
  t.same(plan.drains, [])

  const human = await ctl(['plan'], env)
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /next round\s+would not run: data movement is paused/)
  for (const d of hot) t.match(human.stdout, new RegExp(`^vol1/${d.block}\\s+gw\\d→gw3\\s+site-\\w+ [\\d.]+.*MOVE$`, 'm'), `a row for ${d.block} with its scores and verdict`)
  t.match(human.stdout, /repairs\s+R = 2: 0 under-replicated/)

  const moved = await (await request(`${sb.admin}/v1/migrations`)).body.json() as { migrations: Migration[] }
  t.same(moved.migrations, [], 'the dry run moved nothing')

  // Resumed: the next round (every 10 s in the sandbox) does what the plan said.
  t.equal((await ctl(['resume'], { ...env, FERRY_ADMIN_TOKEN: SANDBOX_TOKEN })).code, 0)
  // Two rounds: the one that moves, and one more so a move the plan did not list would have shown.
  await waitFor(async () => ((await (await request(`${sb.admin}/v1/rebalancer`)).body.json()) as { rounds: unknown[] }).rounds.length >= 2, 'two rebalancer rounds', 40_000, 500)
  const done = await waitFor(async () => {
    const m = (await (await request(`${sb.admin}/v1/migrations`)).body.json() as { migrations: Migration[] }).migrations.filter(x => x.reason === 'rebalance')
    return m.every(x => x.result !== null) && m
  }, 'the moves to end', 30_000, 500) as Migration[]
  t.same(done.map(m => `${m.volume}/${m.block}→${m.to}`).sort(), willMove.map(d => `${d.volume}/${d.block}→${d.to}`).sort(), 'the rounds moved exactly what the plan listed as MOVE')
  const after = JSON.parse((await ctl(['plan', '--json'], env)).stdout) as Plan
  t.notOk(after.rebalancer.decisions.some(d => hotBlocks.includes(d.block) && d.verdict === 'move'), 'nothing left to move for them')

  t.equal((await ctl(['plan', '--limit', '0'], env)).code, 2, 'usage error')
})
