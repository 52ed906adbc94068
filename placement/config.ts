import { z } from 'zod'

/**
 * The `placement:` section, read by both sides of first-touch placement: the proxy (which
 * metadata it keeps with a first write, how often it reports) and the planner (training,
 * validation, publishing). It lives here, below the roles, because both read it.
 */
const ms = (def: number, what: string): z.ZodDefault<z.ZodNumber> => z.number().int().nonnegative().default(def).describe(what)

const headerPrefix = z.string().min(1).max(64).regex(/^[a-z0-9-]+$/, 'a lower-case header name or prefix')

export const placementSectionSchema = z.object({
  enabled: z.boolean().default(true)
    .describe('first writes are placed by the partitioning engine (write locality until a model exists); false: by rendezvous hashing as before'),
  metadataHeaders: z.array(headerPrefix).max(32).default(['x-ferry-meta-', 'x-amz-meta-'])
    .describe('request headers (names, or prefixes ending in "-") kept with a block\'s first write and fed to the embedder'),
  maxMetadataBytes: z.number().int().positive().max(65536).default(2048)
    .describe('a PUT whose metadata headers (names and values) exceed this is refused with 400 FERRY_METADATA_TOO_LARGE (S3 allows 2 KB of user metadata)'),
  reportIntervalMs: ms(1000, 'how often a proxy reports its decision counts and first writes to the planner (through the store)'),
  retrainIntervalMs: ms(600_000, 'how often the planner retrains the placement model from live traffic; 0 = only on POST /v1/placement/retrain'),
  publishIntervalMs: ms(30_000, 'how often the leader republishes the placement table (gateway health, capacity and drains change)'),
  minExamples: z.number().int().positive().default(20).describe('fewest blocks with access history a retrain needs'),
  holdoutFraction: z.number().min(0.05).max(0.5).default(0.2)
    .describe('share of the most recently created blocks held out to compare the new model with the one in use'),
  maxHistory: z.number().int().positive().max(10_000_000).default(200_000).describe('first-write records the planner keeps for training (oldest dropped first)'),
  maxTrainingBlocks: z.number().int().positive().max(10_000_000).default(200_000).describe('blocks of the affinity map a retrain reads at most'),
  maxTableVolumes: z.number().int().positive().max(100_000).default(20_000).describe('volumes in the published table (those with the most history first)'),
  model: z.string().min(1).optional().describe('a `ferry train-placement` model file the planner loads at start (it must match the embedder)'),
  embedder: z.enum(['ngram', 'transformers']).default('ngram').describe('metadata embedder; transformers needs embedderModel'),
  embedderModel: z.string().min(1).optional().describe('local directory of the transformers.js sentence-embedding model (never downloaded)')
}).strict().superRefine((c, ctx) => {
  if (c.embedder === 'transformers' && c.embedderModel === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['embedderModel'], message: 'embedder "transformers" needs embedderModel (a local model directory)' })
  }
})

export type PlacementConfig = z.infer<typeof placementSectionSchema>
export type PlacementConfigInput = z.input<typeof placementSectionSchema>

export function parsePlacementConfig (input: PlacementConfigInput | undefined): PlacementConfig {
  return placementSectionSchema.parse(input ?? {})
}
