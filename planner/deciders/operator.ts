import { FerryError } from '../../lib/errors.js'
import type { MigrationRecord, StateStore } from '../../state/types.js'
import { plannerError } from '../migration/errors.js'
import type { MoveSubmitter } from './submit.js'

export interface MoveRequest {
  volume: string
  /** Omitted: every known block of the volume. */
  block?: string
  /** Omitted: the best gateway by affinity. */
  to?: string
  reason?: string
}

export interface MoveResult {
  migrations: MigrationRecord[]
  /** Blocks of a volume move that were not started, with why. */
  skipped: Array<{ block: string, code: string, message: string }>
}

/**
 * The operator's moves (`POST /v1/migrations`, `ferry ctl move`): one block, or every known block
 * of a volume, to a named gateway or to each block's best one. The operator decides; this only
 * expands a volume into its blocks and submits each.
 */
export class OperatorMoves {
  constructor (private readonly store: StateStore, private readonly submitter: MoveSubmitter) {}

  async move (req: MoveRequest): Promise<MoveResult> {
    if (req.to !== undefined) this.submitter.checkTarget(req.to)
    const reason = req.reason ?? 'operator'
    if (req.block !== undefined) {
      return { migrations: [await this.submitter.submit({ volume: req.volume, block: req.block, to: req.to, reason })], skipped: [] }
    }
    const blocks = await this.blocksOfVolume(req.volume)
    if (blocks.length === 0) throw plannerError('FERRY_BLOCK_NOT_FOUND', `no known block of volume ${req.volume} (placed, or in the affinity map)`, 404)
    const out: MoveResult = { migrations: [], skipped: [] }
    // Bytes promised to each target so far: a volume's blocks do not all pile onto one gateway.
    const planned = new Map<string, number>()
    for (const block of blocks) {
      try {
        out.migrations.push(await this.submitter.submit({ volume: req.volume, block, to: req.to, reason }, planned))
      } catch (err) {
        if (!(err instanceof FerryError) || err.statusCode >= 500) throw err
        out.skipped.push({ block, code: err.code, message: err.message })
      }
    }
    return out
  }

  /** Blocks of a volume the planner knows: placed ones and those in the affinity map. */
  private async blocksOfVolume (volume: string): Promise<string[]> {
    const blocks = new Set<string>()
    for await (const { volume: v, block } of this.store.scanLocations()) if (v === volume) blocks.add(block)
    for await (const { volume: v, block } of this.store.scanAffinity()) if (v === volume) blocks.add(block)
    return [...blocks].sort()
  }
}
