/**
 * The health model's public surface, for the planner (scoring, triggering), the CLI (train,
 * evaluate), the agent and store (telemetry types, CSV export) and the sandbox demos
 * (scenarios). See README.md in this folder.
 */
export { HealthModel, MODEL_FORMAT, MODEL_VERSION, DEFAULT_PARAMS, signalHealth } from './model.js'
export type { HealthModelParams, HealthModelFile, TrainOptions, SignalProfile } from './model.js'
export { TriggerPolicy, DEFAULT_TRIGGER } from './trigger.js'
export type { TriggerOptions, TriggerInput, TriggerDecision, TriggerState } from './trigger.js'
export { SIGNALS, DEFAULT_SIGNAL_SPECS } from './types.js'
export type { SignalName, TelemetrySample, TelemetryRecord, SampleLike, SignalSpec, HealthAssessment, SignalAssessment, TrendDirection } from './types.js'
export { parseTelemetryCsv, readTelemetryCsv, formatTelemetryCsv, CSV_HEADER } from './csv.js'
export { evaluateModel } from './evaluate.js'
export type { EvaluationReport, EvaluateOptions } from './evaluate.js'
export { trainCommand, evaluateCommand, TRAIN_USAGE, EVALUATE_USAGE } from './commands.js'
export type { CommandIO } from './commands.js'
export { generateScenario, streamScenario, parseScenario, scenarioRecords, SCENARIO_KINDS, PRECURSOR_KINDS } from './scenarios.js'
export type { Scenario, ScenarioInfo, ScenarioKind, ScenarioOptions, FaultStep, GatewayFaults } from './scenarios.js'
