/**
 * Waiting migrations, most valuable first: a binary heap on (priority desc, arrival asc). The
 * priority is the block's access score (the seed: "prioritise migration of most frequently
 * accessed data blocks"), so with a bandwidth limit the hot blocks of a drained gateway move
 * first; equal priorities keep their submission order.
 */
export interface Queued {
  readonly priority: number
  readonly seq: number
}

export class MigrationQueue<T extends Queued> {
  private heap: T[] = []

  get size (): number { return this.heap.length }

  push (item: T): void {
    const h = this.heap
    h.push(item)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i] as T, h[p] as T)) break
      ;[h[i], h[p]] = [h[p] as T, h[i] as T]
      i = p
    }
  }

  pop (): T | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l] as T, h[m] as T)) m = l
        if (r < h.length && before(h[r] as T, h[m] as T)) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m] as T, h[i] as T]
        i = m
      }
    }
    return top
  }

  /** Removes the items for which `drop` holds (cancellations); O(n). */
  remove (drop: (item: T) => boolean): T[] {
    const removed = this.heap.filter(drop)
    if (removed.length === 0) return removed
    const kept = this.heap.filter(x => !drop(x))
    this.heap = []
    for (const x of kept) this.push(x)
    return removed
  }

  clear (): T[] {
    const all = this.heap
    this.heap = []
    return all
  }
}

function before (a: Queued, b: Queued): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq
}
