import type { Logger } from '../lib/log.js'
import type { StateStore } from '../state/types.js'
import type { MigrationEngine } from './migration/engine.js'

/** The store document that holds the data-movement kill switch: every planner reads it, the last write wins. */
export const DATA_MOVEMENT_DOC = 'data-movement'

export interface DataMovementState {
  paused: boolean
  /** When it was last set, and through which planner (its lease holder id). */
  at: number
  by: string
}

/**
 * The data-movement kill switch (PD's halt-scheduling) kept in the store, not in one leader's
 * memory: a pause set through any planner holds on the leader within one tick, and a new leader
 * reads it before its engine starts anything. The engine's own flag is the switch in force here.
 */
export class MovementSwitch {
  /** Bumped by every set(): a sync whose read raced a set() here must not undo it with what it read before. */
  private sets = 0

  constructor (private readonly opts: { store: StateStore, engine: MigrationEngine, holder: () => string, logger: Logger }) {}

  /** Stored first: a pause that did not reach the store would end with this planner, so a store failure refuses the call. */
  async set (paused: boolean): Promise<DataMovementState> {
    this.sets++
    const state: DataMovementState = { paused, at: Date.now(), by: this.opts.holder() }
    await this.opts.store.putDocument(DATA_MOVEMENT_DOC, state)
    this.opts.engine.setPaused(paused)
    return state
  }

  /**
   * Puts the stored switch in force here. No document: never set, or the store lost its data;
   * then a pause in force here is written back (as the drains are), so a store restart does not
   * silently resume data movement.
   */
  async sync (): Promise<void> {
    const before = this.sets
    const doc = await this.opts.store.getDocument(DATA_MOVEMENT_DOC) as Partial<DataMovementState> | null
    if (this.sets !== before) return
    if (doc === null || typeof doc.paused !== 'boolean') {
      if (this.opts.engine.isPaused) await this.set(true)
      return
    }
    if (doc.paused !== this.opts.engine.isPaused) {
      this.opts.logger.info({ paused: doc.paused, by: doc.by, at: doc.at }, 'data movement switch taken from the store')
      this.opts.engine.setPaused(doc.paused)
    }
  }
}
