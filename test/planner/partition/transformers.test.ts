/**
 * TransformersEmbedder on a tiny BERT-shaped model built by the test itself (tiny-model.ts):
 * the real loading path (config, WordPiece tokenizer, ONNX Runtime session, mean pooling,
 * normalisation) with no model download and no network.
 */
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { TransformersEmbedder } from '../../../planner/partition/transformers.js'
import { PlacementModel } from '../../../planner/partition/model.js'
import { writeTinyModel } from './tiny-model.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-tiny-model-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
const modelDir = writeTinyModel(dir, 'tiny-bert', 16)

// Any attempt to reach the network fails the test (and the load).
const realFetch = globalThis.fetch
let fetches = 0
globalThis.fetch = (async (input: unknown) => { fetches++; throw new Error(`network access attempted: ${String(input)}`) }) as typeof fetch
t.teardown(() => { globalThis.fetch = realFetch })

function cos (a: Float32Array, b: Float32Array): number {
  let d = 0
  for (let i = 0; i < a.length; i++) d += (a[i] as number) * (b[i] as number)
  return d
}

t.test('loads a local model offline and embeds deterministically', async t => {
  const e = await TransformersEmbedder.load({ model: modelDir })
  t.equal(e.dim, 16, 'dim learned from the model output')
  t.match(e.name, /^transformers:tiny-bert:fp32:mean:[0-9a-f]{16}$/)
  const { env } = await import('@xenova/transformers')
  t.equal(env.allowRemoteModels, false, 'remote models are disabled')

  const texts = ['/shuttle/missions/sts-70/images/launch-logo.gif', '/shuttle/missions/sts-71/images/launch-logo.gif', 'apollo history facts', 'apollo history facts']
  const v = await e.embed(texts)
  t.equal(v.length, 4)
  for (const x of v) {
    t.equal(x.length, 16)
    t.ok(Math.abs(cos(x, x) - 1) < 1e-5, 'unit length')
  }
  t.same([...v[2]!], [...v[3]!], 'same text, same vector')
  t.ok(cos(v[0]!, v[1]!) > cos(v[0]!, v[2]!), 'sibling paths are nearer than unrelated text')

  const again = await TransformersEmbedder.load({ model: 'tiny-bert', localModelPath: dir, batchSize: 1 })
  t.equal(again.name, e.name, 'the same weights give the same name')
  const w = await again.embed(texts)
  for (let i = 0; i < 4; i++) t.ok(cos(v[i]!, w[i]!) > 0.99999, `deterministic across loads and batch sizes (${i})`)
  await e.close()
  await again.close()
  t.equal(fetches, 0, 'no network access')
})

t.test('trains and reloads a placement model with the transformer embedder', async t => {
  const e = await TransformersEmbedder.load({ model: modelDir })
  const history = []
  for (let i = 0; i < 30; i++) {
    history.push({ meta: { volume: 'eu', block: `b${i}`, path: `/shuttle/missions/sts-70/images/${i}.gif` }, scores: { europe: 9, asia: 1 } })
    history.push({ meta: { volume: 'as', block: `b${i}`, path: `/history/apollo/facts/${i}.html` }, scores: { europe: 1, asia: 9 } })
  }
  const model = await PlacementModel.train(history, e, { validationSample: 0 })
  const back = PlacementModel.fromJSON(JSON.parse(JSON.stringify(model.toJSON())), e)
  const meta = { volume: 'eu', block: 'new', path: '/shuttle/missions/sts-70/images/new.gif' }
  t.same(await back.predict(meta), await model.predict(meta))
  t.ok((await model.predict(meta)).europe! > 0.5)
  await e.close()
  t.equal(fetches, 0, 'no network access')
})

t.test('a missing or broken model is a typed error, never a download', async t => {
  await t.rejects(TransformersEmbedder.load({ model: path.join(dir, 'nope') }), { code: 'FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE', message: /config\.json/ })
  const broken = writeTinyModel(dir, 'broken', 8)
  fs.writeFileSync(path.join(broken, 'onnx', 'model.onnx'), 'not an onnx file')
  await t.rejects(TransformersEmbedder.load({ model: broken }), { code: 'FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE' })
  const noOnnx = writeTinyModel(dir, 'no-onnx', 8)
  fs.rmSync(path.join(noOnnx, 'onnx', 'model.onnx'))
  await t.rejects(TransformersEmbedder.load({ model: noOnnx }), { code: 'FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE', message: /model\.onnx/ })
  await t.rejects(TransformersEmbedder.load({ model: modelDir, quantized: true }), { code: 'FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE', message: /model_quantized\.onnx/ })
  await t.rejects(TransformersEmbedder.load({ model: modelDir, batchSize: 0 }), { code: 'FERRY_PLACEMENT_BAD_OPTIONS' })
  t.equal(fetches, 0, 'no network access')
})
