/**
 * Builds a tiny BERT-shaped sentence-embedding model on disk, from nothing, for the
 * TransformersEmbedder tests: no download, no Python, no model files in the repository.
 *
 *   config.json              model_type "bert", hidden_size H
 *   tokenizer.json           a real WordPiece tokenizer (BERT normaliser and pre-tokeniser,
 *                            [CLS] … [SEP] template) over a small vocabulary
 *   tokenizer_config.json
 *   onnx/model.onnx          a hand-encoded ONNX graph (opset 12):
 *                              hidden = Gather(embeddings[V×H], input_ids)
 *                              last_hidden_state = Tanh(hidden) × Unsqueeze(Cast(attention_mask))
 *
 * The ONNX file is written with a minimal protobuf encoder (varints, length-delimited
 * fields): enough of onnx.proto's ModelProto / GraphProto / NodeProto / TensorProto /
 * ValueInfoProto for this graph. Weights come from a seeded generator, so every build of the
 * model is byte-identical.
 */
import fs from 'node:fs'
import path from 'node:path'

// ── protobuf wire format

function varint (n: number | bigint): number[] {
  let v = BigInt(n)
  if (v < 0n) v += 1n << 64n
  const out: number[] = []
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v !== 0n) b |= 0x80
    out.push(b)
  } while (v !== 0n)
  return out
}

type Field = number[]
const key = (field: number, wire: number): number[] => varint((field << 3) | wire)
const int = (field: number, v: number | bigint): Field => [...key(field, 0), ...varint(v)]
const bytes = (field: number, b: Uint8Array | number[]): Field => [...key(field, 2), ...varint(b.length), ...b]
const str = (field: number, s: string): Field => bytes(field, [...Buffer.from(s, 'utf8')])
const msg = (field: number, ...parts: Field[]): Field => bytes(field, parts.flat())

// ── onnx.proto subset (field numbers from onnx/onnx.proto)

const FLOAT = 1
const INT64 = 7

function tensorType (field: number, elemType: number, dims: Array<number | string>): Field {
  const shape = dims.map(d => msg(1, typeof d === 'number' ? int(1, d) : str(2, d)))
  // ValueInfoProto.type (2) → TypeProto.tensor_type (1) → { elem_type (1), shape (2) }
  return msg(field, msg(1, int(1, elemType), msg(2, ...shape)))
}

function valueInfo (field: number, name: string, elemType: number, dims: Array<number | string>): Field {
  return msg(field, str(1, name), tensorType(2, elemType, dims))
}

function node (op: string, inputs: string[], outputs: string[], attrs: Field[] = []): Field {
  return msg(1, ...inputs.map(i => str(1, i)), ...outputs.map(o => str(2, o)), str(3, op + '_' + outputs[0]), str(4, op), ...attrs)
}

/** AttributeProto: INT = 2, INTS = 7. */
const attrInt = (name: string, v: number): Field => msg(5, str(1, name), int(20, 2), int(3, v))
const attrInts = (name: string, vs: number[]): Field => msg(5, str(1, name), int(20, 7), ...vs.map(v => int(8, v)))

function floatTensor (name: string, dims: number[], data: Float32Array): Field {
  return msg(5, ...dims.map(d => int(1, d)), int(2, FLOAT), str(8, name), bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)))
}

export function tinyOnnxModel (vocab: number, hidden: number, seed = 7): Uint8Array {
  let a = seed >>> 0
  const rnd = (): number => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return a / 2 ** 32 }
  const emb = new Float32Array(vocab * hidden)
  for (let i = 0; i < emb.length; i++) emb[i] = rnd() * 2 - 1
  const graph = [
    node('Gather', ['embeddings', 'input_ids'], ['hidden'], [attrInt('axis', 0)]),
    node('Tanh', ['hidden'], ['activated']),
    node('Cast', ['attention_mask'], ['mask_f'], [attrInt('to', FLOAT)]),
    node('Unsqueeze', ['mask_f'], ['mask_3d'], [attrInts('axes', [2])]),
    node('Mul', ['activated', 'mask_3d'], ['last_hidden_state']),
    str(2, 'tiny-bert'),
    floatTensor('embeddings', [vocab, hidden], emb),
    valueInfo(11, 'input_ids', INT64, ['batch', 'sequence']),
    valueInfo(11, 'attention_mask', INT64, ['batch', 'sequence']),
    valueInfo(12, 'last_hidden_state', FLOAT, ['batch', 'sequence', hidden])
  ]
  const model = [
    int(1, 7), // ir_version 7
    str(2, 'ferry-tests'),
    msg(7, ...graph),
    msg(8, str(1, ''), int(2, 12)) // opset_import: default domain, version 12
  ]
  return Uint8Array.from(model.flat())
}

// ── tokenizer and config

const WORDS = ['shuttle', 'missions', 'images', 'history', 'apollo', 'launch', 'logo', 'gif', 'html', 'sts', 'vol', 'tags', 'kennedy', 'space', 'center', 'news', 'facts', 'countdown']
const SUBWORDS = ['##s', '##ing', '##ed', '##er']
const CHARS = [...'abcdefghijklmnopqrstuvwxyz0123456789'].flatMap(c => [c, '##' + c])
const PUNCT = [...'/.-_:,']

export function tinyVocab (): string[] {
  return ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...WORDS, ...SUBWORDS, ...CHARS, ...PUNCT]
}

function tokenizerJson (vocab: string[]): object {
  const ids: Record<string, number> = {}
  vocab.forEach((t, i) => { ids[t] = i })
  const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map(t => ({ id: ids[t], content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [ids['[CLS]']], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [ids['[SEP]']], tokens: ['[SEP]'] }
      }
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: ids }
  }
}

/** Writes the model into `dir/<name>` and returns that directory. */
export function writeTinyModel (dir: string, name = 'tiny-bert', hidden = 16): string {
  const root = path.join(dir, name)
  fs.mkdirSync(path.join(root, 'onnx'), { recursive: true })
  const vocab = tinyVocab()
  fs.writeFileSync(path.join(root, 'config.json'), JSON.stringify({
    architectures: ['BertModel'], model_type: 'bert', hidden_size: hidden, vocab_size: vocab.length,
    num_hidden_layers: 0, num_attention_heads: 1, intermediate_size: hidden, max_position_embeddings: 128, type_vocab_size: 1
  }, null, 2))
  fs.writeFileSync(path.join(root, 'tokenizer.json'), JSON.stringify(tokenizerJson(vocab)))
  fs.writeFileSync(path.join(root, 'tokenizer_config.json'), JSON.stringify({
    tokenizer_class: 'BertTokenizer', do_lower_case: true, model_max_length: 128,
    cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]'
  }, null, 2))
  fs.writeFileSync(path.join(root, 'onnx', 'model.onnx'), tinyOnnxModel(vocab.length, hidden))
  return root
}
