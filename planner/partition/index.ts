/**
 * The data partitioning engine: placement of blocks and volumes never seen before by predicted
 * access (see planner/README.md, "Partitioning"). TransformersEmbedder lives in
 * ./transformers.js and is imported on demand, so loading the planner does not load ONNX Runtime.
 */
export { type Embedder, type BlockMeta, NgramHashEmbedder, CachingEmbedder, metaText, normalise, type NgramHashOptions } from './embedder.js'
export { PlacementModel, PLACEMENT_FORMAT, PLACEMENT_VERSION, type TrainingExample, type PlacementTrainOptions, type PlacementParams, type PlacementValidation } from './model.js'
export { Partitioner, hashPlacement, type PlacementDecision } from './partitioner.js'
export { trainPlacementCommand, makeEmbedder, TRAIN_PLACEMENT_USAGE } from './command.js'
export type { TransformersEmbedder, TransformersEmbedderOptions } from './transformers.js'
