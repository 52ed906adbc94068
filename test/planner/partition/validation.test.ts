import t from 'tap'
import { AffinityScorer, latencyMatrix } from '../../../planner/affinity/index.js'
import { NgramHashEmbedder } from '../../../planner/partition/embedder.js'
import { LivePlacement } from '../../../planner/partition/live.js'
import type { TrainingExample } from '../../../planner/partition/model.js'
import { parsePlacementConfig } from '../../../placement/config.js'
import { createStore } from '../../../state/factory.js'

/**
 * The live engine's validation scores held-out blocks on where they were read after their
 * creation: the creating access (from the origin, which the model is given) is taken out of the
 * label, and a block never read since says nothing and is not scored. (Scored with it, a model
 * predicting "the origin" won on young blocks: the first model was kept in 50 of 51 retrains of
 * the placement benchmark.) In-process on the memory store: the class the planner runs.
 */
t.test('held-out labels leave out the creating access; never-read blocks are not scored', async t => {
  const H = 600_000
  let now = Date.UTC(2026, 11, 4)
  const scorer = new AffinityScorer({ latency: latencyMatrix({}, { sameSiteMs: 2, defaultMs: 100 }) })
  const live = new LivePlacement({
    store: createStore({ backend: 'memory' }),
    config: parsePlacementConfig({}),
    embedder: new NgramHashEmbedder(),
    now: () => now,
    host: { isLeader: () => false, gateways: () => [{ id: 'gw1', site: 'site-a', capacityBytes: 0, usedBytes: 0, healthy: true }, { id: 'gw2', site: 'site-b', capacityBytes: 0, usedBytes: 0, healthy: true }], scorer: () => scorer, meanBlockBytes: () => 1, halfLifeMs: () => H }
  })
  const examples: TrainingExample[] = []
  const add = (block: string, scores: Record<string, number>): void => {
    live.noteFirstWrite({ volume: 'sci', block, origin: 'site-a', at: now, path: `/sci/${block}` })
    examples.push({ meta: live.metaOf('sci', block), scores })
  }
  // Written at site-a, then read at site-b (scores as of `now`: the write weighs 1).
  for (let i = 0; i < 40; i++) add(`old${i}`, { 'site-a': 1, 'site-b': 3 })
  const first = await live.retrain('test', examples)
  t.ok(first.swapped, 'the first model is swapped in')
  now += 1000
  // After it: 20 blocks written at site-a and never read, 10 read at site-b after their creation.
  for (let i = 0; i < 20; i++) add(`quiet${i}`, { 'site-a': 1 })
  for (let i = 0; i < 10; i++) add(`read${i}`, { 'site-a': 1, 'site-b': 2 })
  now += 1
  const second = await live.retrain('test', examples)
  t.equal(second.heldOut, 10, 'only the 10 blocks read since their creation are scored')
  t.ok(second.crossEntropy !== null && second.crossEntropy.previous !== null, 'both models were scored on them')
})
