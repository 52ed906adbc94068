/**
 * Forward decay (Cormode, Shkapenyuk, Srivastava, Xu: "Forward Decay: A Practical Time Decay
 * Model for Streaming Systems", ICDE 2009), the one decay rule of ferry's access scores: the
 * proxies' access recorder, the planner's affinity table and profiler, and the store's merged
 * affinity entries (whose Lua merge script mirrors `decayFactor`).
 *
 * An event at time t is stored with weight growth(t - t0, H) = 2^((t - t0)/H) relative to a
 * landmark t0, so recording never touches older entries; a score read at `now` is multiplied by
 * decayFactor(now - t0, H). Weights grow without bound, so each owner moves its landmark (divides
 * what it stores by the current weight and sets t0 = now) once a weight passes a limit its
 * number type can hold; that rescale loop belongs to the owner because only it knows its layout.
 */

/** 2^(dtMs/H): an event's weight dtMs after the landmark. exp(x·ln2) is the same value as
 * pow(2, x) and several times cheaper in V8; this runs for every distinct timestamp ingested. */
export function growth (dtMs: number, halfLifeMs: number): number {
  return Math.exp(dtMs * Math.LN2 / halfLifeMs)
}

/** 2^-(dtMs/H): what a score is worth dtMs later. */
export function decayFactor (dtMs: number, halfLifeMs: number): number {
  return Math.pow(2, -dtMs / halfLifeMs)
}
