/**
 * ferry's detector on NAB: each NAB series is one signal of a gateway the model has never seen
 * (an untrained model learns it online, from the first row), and the anomaly score of a row is
 * 1 - the health the model predicts after taking that row in. The series has no known failure
 * side or level (`direction: both`, no limit), so what NAB measures here is the model's
 * novelty part; the forecast-to-limit part is measured by the gateway scenarios.
 *
 * One parameter set for every series (the model's defaults); no labels are read. The detector
 * is causal by construction: row i is scored before row i + 1 is seen.
 */
import { HealthModel, type TrainOptions } from './model.js'

/** NAB timestamps ("2014-04-01 00:00:00") as Unix ms. */
export function nabTime (t: string): number {
  return Date.parse(t.replace(' ', 'T') + 'Z')
}

export function ferryNabScores (timestamps: readonly string[], values: readonly number[], opts: TrainOptions = {}): Float64Array {
  const model = HealthModel.untrained({ ...opts, signals: [{ name: 'value', direction: 'both' }] })
  const out = new Float64Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const a = model.score('nab', [{ timestamp: nabTime(timestamps[i] as string), value: values[i] as number }])
    out[i] = 1 - a.score
  }
  return out
}
