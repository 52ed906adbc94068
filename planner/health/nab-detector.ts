/**
 * ferry's detector on NAB: each NAB series is one signal of a gateway the model has never seen
 * (an untrained model learns it online, from the first row), and the anomaly score of a row is
 * 1 - the health the model predicts after taking that row in. The series has no known failure
 * side or level (`direction: both`, no limit), so what NAB measures here is the model's
 * novelty part; the forecast-to-limit part is measured by the gateway scenarios.
 *
 * One parameter set for every series (the model's defaults); no labels are read. The detector
 * is causal by construction: row i is scored before row i + 1 is seen. The one thing it is told
 * about a file is what NAB tells every detector: the probationary period (15 % of the rows, at
 * most 750), which sets how long the adaptive-resonance part learns before it scores (a live
 * gateway uses 750 samples).
 */
import { HealthModel, DEFAULT_PARAMS, type TrainOptions } from './model.js'
import { probationLength } from './nab.js'

/** NAB timestamps ("2014-04-01 00:00:00") as Unix ms. */
export function nabTime (t: string): number {
  return Date.parse(t.replace(' ', 'T') + 'Z')
}

export function ferryNabScores (timestamps: readonly string[], values: readonly number[], opts: TrainOptions = {}, probation = probationLength(values.length)): Float64Array {
  const novelty = opts.novelty ?? DEFAULT_PARAMS.novelty
  const withProbation = novelty.kind === 'ensemble' ? { ...novelty, art: { ...novelty.art, probation } } : novelty
  const model = HealthModel.untrained({ ...opts, novelty: withProbation, signals: [{ name: 'value', direction: 'both' }] })
  const out = new Float64Array(values.length)
  let last = -Infinity
  for (let i = 0; i < values.length; i++) {
    // Every row is a sample: a repeated timestamp (a clock change in the source) is nudged
    // forward a millisecond rather than dropped as a duplicate, as the live model would.
    last = Math.max(nabTime(timestamps[i] as string), last + 1)
    const a = model.score('nab', [{ timestamp: last, value: values[i] as number }])
    out[i] = 1 - a.score
  }
  return out
}
