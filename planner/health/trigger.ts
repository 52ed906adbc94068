/**
 * The migration trigger of seed 000 ("health score below threshold and confidence above its
 * threshold"), with the hysteresis an operator needs so that a gateway hovering around the
 * threshold does not start and cancel migrations every few seconds:
 *
 * - trigger after `consecutive` ticks in a row with score < threshold AND confidence >=
 *   minConfidence (one bad tick is noise; a run of them is a trend);
 * - once triggered, stay triggered until `clearConsecutive` ticks in a row with score >=
 *   threshold + clearMargin (recovery must be clear, not a wobble across the line).
 *
 * Pure: no clock, no I/O. The planner calls `update` once per assessment and logs the returned
 * decision, which carries every input it was made from.
 */
import { FerryError } from '../../lib/errors.js'

export interface TriggerOptions {
  /** Health below which a gateway is at risk. */
  threshold: number
  /** Confidence at or above which a low score is believed. */
  minConfidence: number
  /** Ticks in a row needed to trigger. */
  consecutive: number
  /** Recovery must reach threshold + clearMargin. */
  clearMargin: number
  /** Ticks in a row of recovery needed to clear. */
  clearConsecutive: number
}

export const DEFAULT_TRIGGER: TriggerOptions = { threshold: 0.5, minConfidence: 0.5, consecutive: 3, clearMargin: 0.15, clearConsecutive: 10 }

export interface TriggerInput {
  score: number
  lower?: number
  upper?: number
  confidence: number
}

export type TriggerState = 'healthy' | 'at-risk' | 'triggered' | 'recovering'

export interface TriggerDecision {
  /** 'trigger' and 'clear' are edges: act on them; null: nothing changed. */
  event: 'trigger' | 'clear' | null
  /** True from the trigger until the clear. */
  triggered: boolean
  state: TriggerState
  /** Ticks in the current run (bad ticks before a trigger, good ticks before a clear). */
  streak: number
  reason: string
  input: TriggerInput
}

export class TriggerPolicy {
  readonly options: TriggerOptions
  private triggered = false
  private streak = 0

  constructor (options: Partial<TriggerOptions> = {}) {
    const o = { ...DEFAULT_TRIGGER, ...options }
    if (!(o.threshold > 0 && o.threshold < 1)) throw new FerryError('FERRY_TRIGGER_BAD_OPTIONS', 'threshold must be in (0, 1)', 400)
    if (!(o.minConfidence >= 0 && o.minConfidence <= 1)) throw new FerryError('FERRY_TRIGGER_BAD_OPTIONS', 'minConfidence must be in [0, 1]', 400)
    if (!(Number.isInteger(o.consecutive) && o.consecutive >= 1 && Number.isInteger(o.clearConsecutive) && o.clearConsecutive >= 1)) {
      throw new FerryError('FERRY_TRIGGER_BAD_OPTIONS', 'consecutive and clearConsecutive must be integers >= 1', 400)
    }
    if (!(o.clearMargin >= 0 && o.threshold + o.clearMargin <= 1)) throw new FerryError('FERRY_TRIGGER_BAD_OPTIONS', 'clearMargin must be >= 0 and threshold + clearMargin <= 1', 400)
    this.options = o
  }

  get isTriggered (): boolean { return this.triggered }

  update (input: TriggerInput): TriggerDecision {
    const o = this.options
    const score = Number.isFinite(input.score) ? input.score : 1
    const confidence = Number.isFinite(input.confidence) ? input.confidence : 0
    if (!this.triggered) {
      const bad = score < o.threshold && confidence >= o.minConfidence
      this.streak = bad ? this.streak + 1 : 0
      if (bad && this.streak >= o.consecutive) {
        this.triggered = true
        const streak = this.streak
        this.streak = 0
        return { event: 'trigger', triggered: true, state: 'triggered', streak, reason: `score ${score.toFixed(3)} < ${o.threshold} with confidence ${confidence.toFixed(2)} >= ${o.minConfidence} for ${streak} ticks`, input }
      }
      const reason = bad
        ? `score below threshold with confidence for ${this.streak}/${o.consecutive} ticks`
        : score < o.threshold ? `score ${score.toFixed(3)} below threshold but confidence ${confidence.toFixed(2)} < ${o.minConfidence}` : 'healthy'
      return { event: null, triggered: false, state: bad || score < o.threshold ? 'at-risk' : 'healthy', streak: this.streak, reason, input }
    }
    const recovered = score >= o.threshold + o.clearMargin
    this.streak = recovered ? this.streak + 1 : 0
    if (recovered && this.streak >= o.clearConsecutive) {
      this.triggered = false
      const streak = this.streak
      this.streak = 0
      return { event: 'clear', triggered: false, state: 'healthy', streak, reason: `score ${score.toFixed(3)} >= ${(o.threshold + o.clearMargin).toFixed(2)} for ${streak} ticks`, input }
    }
    return { event: null, triggered: true, state: recovered ? 'recovering' : 'triggered', streak: this.streak, reason: recovered ? `recovering ${this.streak}/${o.clearConsecutive}` : 'still at risk', input }
  }

  reset (): void {
    this.triggered = false
    this.streak = 0
  }
}
