import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** The migration engine's Prometheus metrics (README "Migration"). */
export class EngineMetrics {
  readonly ended: Counter<'result'>
  readonly bytes: Counter
  readonly recopies: Counter
  readonly strays: Counter
  readonly lateCopies: Counter
  readonly duration: Histogram

  constructor (registry: Registry | undefined, engine: { readonly inFlight: number, readonly queued: number, readonly isPaused: boolean }) {
    const registers = registry === undefined ? [] : [registry]
    this.ended = new Counter({ name: 'ferry_planner_migrations_total', help: 'Migrations ended, by result (ok, rolled-back, failed, cancelled)', labelNames: ['result'], registers })
    this.bytes = new Counter({ name: 'ferry_planner_migration_bytes_total', help: 'Bytes copied by migrations (re-copies included)', registers })
    this.recopies = new Counter({ name: 'ferry_planner_recopies_total', help: 'Copies repeated because the target still differed from the source after the copy', registers })
    this.strays = new Counter({ name: 'ferry_planner_stray_copies_total', help: 'Copies that could not be deleted (target unreachable): wasted space, never a location', registers })
    this.lateCopies = new Counter({ name: 'ferry_planner_late_copies_total', help: 'Copies found again on a gateway after a move had removed it from the set and deleted its copy (a write teed there before its proxy heard), and deleted again', registers })
    this.duration = new Histogram({ name: 'ferry_planner_migration_seconds', help: 'Time from a migration\'s start (the target joins) to the source leaving the set (a repair: to the target in sync)', buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300], registers })
    new Gauge({ name: 'ferry_planner_migrations_running', help: 'Migrations running (joining, copying, verifying)', registers, collect () { this.set(engine.inFlight) } })
    new Gauge({ name: 'ferry_planner_data_movement_paused', help: '1 while the operator has paused data movement (ferry ctl pause)', registers, collect () { this.set(engine.isPaused ? 1 : 0) } })
    new Gauge({ name: 'ferry_planner_migrations_queued', help: 'Migrations waiting for a slot', registers, collect () { this.set(engine.queued) } })
  }
}
