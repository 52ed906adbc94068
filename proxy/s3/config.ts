import { z } from 'zod'

const volumeGlob = z.string().regex(/^(\*|[A-Za-z0-9_-][A-Za-z0-9._-]{0,127})$/, 'a volume id or "*"')

export const s3CredentialSchema = z.object({
  accessKeyId: z.string().regex(/^[A-Za-z0-9_.+=@-]{3,128}$/, '3-128 of letters, digits and _ . + = @ -').describe('the access key id clients sign with'),
  secret: z.string().min(8).optional().describe('the secret key, inline (prefer secretFile or secretEnv)'),
  secretFile: z.string().optional().describe('path of a file holding the secret key (surrounding whitespace ignored); read at start and on every reload'),
  secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional().describe('name of an environment variable holding the secret key'),
  volumes: z.array(volumeGlob).min(1).default(['*']).describe('volumes (buckets) the key may use; "*" is all'),
  readOnly: z.boolean().default(false).describe('refuse the key every write')
}).strict().superRefine((c, ctx) => {
  const n = [c.secret, c.secretFile, c.secretEnv].filter(v => v !== undefined).length
  if (n !== 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['secret'], message: 'give exactly one of secret, secretFile, secretEnv' })
})

/** The `s3:` section: the S3 front end of the proxy listener (proxy/s3/README.md). */
export const s3SectionSchema = z.object({
  enabled: z.boolean().default(true).describe('serve S3 requests on the proxy listener beside the plain block API'),
  region: z.string().regex(/^[a-z0-9-]{1,32}$/).default('us-east-1').describe('the region clients sign for and GetBucketLocation reports'),
  credentials: z.array(s3CredentialSchema).default([]).describe('access keys; reloaded live (a changed secretFile is read again on reload)'),
  anonymous: z.array(volumeGlob).optional()
    .describe('volumes unsigned requests (and the plain /{volume}/{block} API) may read and write; "*" is all. Default: all when no credentials are configured, none otherwise'),
  maxSkewMs: z.number().int().positive().default(900_000).describe('refuse a signature whose date is further than this from our clock (RequestTimeTooSkewed)'),
  virtualHosts: z.array(z.string().regex(/^[a-z0-9.-]+$/)).default([])
    .describe('names under which <bucket>.<name> is virtual-hosted-style addressing (the DNS zone is always one)'),
  maxMetadataBytes: z.number().int().positive().max(64 * 1024).default(2048).describe('largest total of x-amz-meta-* names and values (MetadataTooLarge)'),
  authFailures: z.object({
    limit: z.number().int().positive().default(20).describe('authentication failures a client address may have within windowMs; past them its signed requests are answered 503 SlowDown until the window ends'),
    windowMs: z.number().int().positive().default(60_000).describe('the window the failures are counted in, from the first one')
  }).strict().default({}).describe('rate limit of authentication failures per client address'),
  multipart: z.object({
    abandonAfterMs: z.number().int().positive().default(86_400_000).describe('an upload neither completed nor aborted after this long is aborted and its parts deleted'),
    sweepIntervalMs: z.number().int().positive().default(60_000).describe('how often abandoned uploads are looked for'),
    minPartBytes: z.number().int().nonnegative().default(5 * 1024 * 1024).describe('smallest part but the last (EntityTooSmall); S3 says 5 MiB')
  }).strict().default({}).describe('multipart uploads')
}).strict().superRefine((s, ctx) => {
  const ids = new Set<string>()
  s.credentials.forEach((c, i) => {
    if (ids.has(c.accessKeyId)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['credentials', i, 'accessKeyId'], message: `duplicate access key id "${c.accessKeyId}"` })
    ids.add(c.accessKeyId)
  })
}).default({}).describe('the S3 front end: SigV4 credentials, anonymous volumes, multipart')

export type S3Config = z.infer<typeof s3SectionSchema>
export type S3Credential = z.infer<typeof s3CredentialSchema>
