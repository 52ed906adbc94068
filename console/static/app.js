// ferry console: a static page that polls the admin listener's /v1 JSON API. No build step, no
// framework: the DOM is built with textContent only, so nothing a gateway, client or block id
// contains is ever parsed as HTML.
/* global uPlot, document, window, sessionStorage, fetch, Node, setInterval */

const POLL_MS = 2000
const $ = id => document.getElementById(id)
let token = sessionStorage.getItem('ferry.token') ?? ''
const charts = new Map()
let lastGateways = []
/** replication.factor as /v1/repairs last said (null: no planner here). */
let replicationFactor = null

function h (tag, props = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') el.className = v
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'style') Object.assign(el.style, v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}

const fmtBytes = n => {
  if (n === null || n === undefined) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}
const fmtMs = ms => {
  if (ms === null || ms === undefined) return '–'
  if (ms < 1000) return `${ms} ms`
  const s = Math.round(ms / 1000)
  return s < 120 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`
}
const fmtTime = at => at ? new Date(at).toLocaleTimeString() : '–'
const num = (v, d = 2) => v === null || v === undefined ? '–' : Number(v).toFixed(d)

function notice (text, error = false) {
  const n = $('notice')
  n.textContent = text
  n.className = error ? 'error' : ''
  n.hidden = false
}

async function get (path) {
  const r = await fetch(path, { headers: { accept: 'application/json' } })
  const body = await r.json().catch(() => null)
  if (!r.ok) {
    const e = new Error(body?.error?.message ?? `HTTP ${r.status}`)
    e.status = r.status
    throw e
  }
  return body
}

/** An action: asks for confirmation, sends the bearer token if one was given, reports the answer. */
async function act (what, method, path, body) {
  if (!window.confirm(`${what}?`)) return
  const headers = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (token !== '') headers.authorization = `Bearer ${token}`
  try {
    const r = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    const j = await r.json().catch(() => null)
    if (r.ok) notice(`${what}: done`)
    else notice(`${what}: refused (${r.status}) ${j?.error?.message ?? ''} [${j?.error?.code ?? 'HTTP'}]${r.status === 401 ? ' — enter the admin token above' : ''}`, true)
  } catch (err) {
    notice(`${what}: ${err.message}`, true)
  }
  await refresh()
}

// ───────────────────────────── rendering ─────────────────────────────

function renderHeader (ready, planner) {
  const r = $('ready')
  if (ready.status === 'fulfilled') {
    r.textContent = ready.value.status
    r.className = `pill ${ready.value.status === 'ready' ? 'ok' : 'warn'}`
    r.title = [...ready.value.reasons, ...ready.value.degraded].join('\n')
  } else { r.textContent = 'unreachable'; r.className = 'pill bad' }
  const l = $('leader')
  const m = $('movement')
  if (planner.status === 'fulfilled') {
    const p = planner.value
    l.textContent = p.leader ? 'planner: leader' : 'planner: standby'
    l.className = `pill ${p.leader ? 'ok' : ''}`
    l.title = p.holder
    m.textContent = p.paused ? 'data movement PAUSED' : 'data movement on'
    m.className = `pill ${p.paused ? 'bad' : 'ok'}`
  } else {
    l.textContent = 'no planner in this process'
    l.className = 'pill'
    m.textContent = ''
  }
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`
}

function renderFleet (gateways, planner, repairs) {
  const byId = new Map((planner?.gateways ?? []).map(g => [g.id, g]))
  const copies = new Map((repairs?.gateways ?? []).map(g => [g.gateway, g]))
  const down = new Map((repairs?.down ?? []).map(d => [d.gateway, d]))
  const sites = new Map()
  for (const g of gateways) {
    if (!sites.has(g.site)) sites.set(g.site, [])
    sites.get(g.site).push(g)
  }
  const cards = [...sites].map(([site, gws]) => h('div', { class: 'site' }, h('h3', {}, site), gws.map(g => {
    const p = byId.get(g.id)
    const ph = g.predictedHealth
    const atRisk = g.trigger === 'triggered' || g.trigger === 'watching' || (ph && ph.score < 0.5)
    const cap = p?.capacityBytes ?? g.capacityBytes
    const used = p?.usedBytesEstimate ?? null
    const c = copies.get(g.id)
    const d = down.get(g.id)
    return h('div', { class: `gw ${g.healthy ? '' : 'down'} ${atRisk ? 'at-risk' : ''}`, 'data-gateway': g.id },
      h('span', { class: 'name' }, g.id), ' ',
      h('span', { class: `pill ${g.healthy ? 'ok' : 'bad'}` }, g.healthy ? 'healthy' : (g.reason ?? 'down')),
      p?.draining ? h('span', { class: 'pill warn' }, ' draining') : '',
      d?.lost ? h('span', { class: 'pill bad' }, ' lost') : '',
      h('dl', {},
        h('dt', {}, 'url'), h('dd', {}, g.url),
        h('dt', {}, 'predicted'), h('dd', {}, ph ? `${num(ph.score)} [${num(ph.lower)}, ${num(ph.upper)}] conf ${num(ph.confidence)} · ${g.trigger}` : `– (${g.trigger ?? 'no planner'})`),
        h('dt', {}, 'blocks'), h('dd', {}, p ? String(p.placedBlocks) : '–'),
        h('dt', {}, 'replicas'), h('dd', { 'data-replicas': c ? `${c.members}/${c.inSync}` : '' }, c
          ? [`${c.members} sets, ${c.inSync} in sync`, c.members > c.inSync ? h('span', { class: 'result-bad' }, ` · ${c.members - c.inSync} out of sync`) : '']
          : '–'),
        h('dt', {}, 'capacity'), h('dd', {}, cap > 0
          ? h('div', { title: `${fmtBytes(used)} of ${fmtBytes(cap)}` }, h('div', { class: 'bar' }, h('div', { style: { width: `${Math.min(100, (100 * (used ?? 0)) / cap)}%` } })), `${fmtBytes(used)} / ${fmtBytes(cap)}`)
          : `${fmtBytes(used)} used (unlimited)`),
        h('dt', {}, 'in flight'), h('dd', {}, String(g.inflight)),
        g.lastProbeError ? [h('dt', {}, 'probe'), h('dd', {}, g.lastProbeError)] : ''
      ),
      p ? (p.draining
        ? h('button', { type: 'button', 'data-action': 'undrain', onclick: () => act(`Undrain ${g.id}`, 'DELETE', `/v1/gateways/${encodeURIComponent(g.id)}/drain`) }, 'Undrain')
        : h('button', { type: 'button', 'data-action': 'drain', onclick: () => act(`Drain ${g.id} (move every block off it)`, 'POST', `/v1/gateways/${encodeURIComponent(g.id)}/drain`, {}) }, 'Drain'))
        : ''
    )
  })))
  $('fleet').replaceChildren(...cards)
  const sel = $('move-to')
  const want = [''].concat(gateways.map(g => g.id))
  if ([...sel.options].map(o => o.value).join() !== want.join()) {
    sel.replaceChildren(h('option', { value: '' }, 'best by affinity'), ...gateways.map(g => h('option', { value: g.id }, g.id)))
  }
}

function renderHealth (status, histories) {
  if (status === null) { $('health-model').textContent = '(no planner in this process)'; return }
  $('health-model').textContent = `model: ${status.model.source}, horizon ${status.model.horizonS} s, threshold ${status.threshold}`
  const box = $('health')
  for (const g of status.gateways) {
    let entry = charts.get(g.gateway)
    if (entry === undefined) {
      const el = h('div', { class: 'chart', 'data-gateway': g.gateway }, h('h3', {}, g.gateway), h('div', { class: 'empty' }, 'no telemetry scored yet'))
      box.append(el)
      entry = { el, plot: null }
      charts.set(g.gateway, entry)
    }
    entry.el.querySelector('h3').textContent = `${g.gateway} — ${g.state}${g.score === null ? '' : `, score ${num(g.score)} [${num(g.lower)}, ${num(g.upper)}]`}`
    const hist = histories.get(g.gateway) ?? []
    if (hist.length === 0) continue
    const data = [hist.map(p => p.at / 1000), hist.map(p => p.score), hist.map(p => p.lower), hist.map(p => p.upper), hist.map(() => status.threshold)]
    if (entry.plot === null) {
      entry.el.querySelector('.empty')?.remove()
      const width = 450
      entry.plot = new uPlot({
        width,
        height: 200,
        scales: { y: { range: [0, 1] } },
        series: [
          {},
          { label: 'score', stroke: '#0969da', width: 2 },
          { label: 'lower', stroke: 'rgba(9,105,218,0.4)', dash: [4, 4] },
          { label: 'upper', stroke: 'rgba(9,105,218,0.4)', dash: [4, 4] },
          { label: 'threshold', stroke: '#cf222e', width: 1 }
        ],
        bands: [{ series: [3, 2], fill: 'rgba(9,105,218,0.12)' }]
      }, data, entry.el)
    } else {
      entry.plot.setData(data)
    }
  }
}

function progressOf (m) {
  if (m.result === 'ok') return 100
  if (m.progress?.percent !== null && m.progress?.percent !== undefined) return m.progress.percent
  return m.totalBytes ? Math.min(100, Math.round((1000 * m.bytes) / m.totalBytes) / 10) : null
}

/** One migration (or repair) as a table row: progress bar, bytes, rate, ETA while in flight, duration once ended. */
function migrationRow (m) {
  const pct = progressOf(m)
  return h('tr', { 'data-migration': m.id },
    h('td', {}, m.id), h('td', {}, `${m.volume}/${m.block}`), h('td', {}, `${m.from} → ${m.to}`), h('td', {}, m.reason ?? ''),
    h('td', {}, m.progress?.state ?? m.phase),
    h('td', {}, h('div', { class: 'bar', title: pct === null ? 'size unknown' : `${pct}%` }, h('div', { style: { width: `${pct ?? 0}%` } })), pct === null ? '' : `${pct}%`),
    h('td', { class: 'num' }, `${fmtBytes(m.bytes)}${m.totalBytes ? ` / ${fmtBytes(m.totalBytes)}` : ''}`),
    h('td', { class: 'num' }, m.progress?.bytesPerSec ? `${fmtBytes(m.progress.bytesPerSec)}/s` : '–'),
    h('td', { class: 'num' }, m.result === null ? fmtMs(m.progress?.etaMs) : fmtMs(m.endedAt - m.startedAt)),
    h('td', { class: m.result === 'ok' ? 'result-ok' : m.result ? 'result-bad' : '' }, m.result ?? 'in flight', m.error ? ` (${m.error})` : '')
  )
}

function fillRows (table, rows, empty) {
  const cols = table.tHead.rows[0].cells.length
  table.tBodies[0].replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: cols, class: 'muted' }, empty))]))
}

function renderMigrations (migrations) {
  fillRows($('migrations'), migrations.map(migrationRow), 'no migrations yet')
}

const count = (label, n, badWhen = false) => h('div', { class: `count ${badWhen ? 'bad' : 'ok'}`, 'data-count': label }, h('b', {}, String(n)), label)

function renderReplicas (r) {
  if (r === null) { $('replicas-summary').textContent = '(no planner in this process)'; return }
  const inFlight = r.repairs.filter(m => m.result === null)
  $('replicas-summary').textContent = `replication factor ${r.factor} · last repair pass ${fmtTime(r.lastPassAt)}`
  $('replicas-counts').replaceChildren(
    count('under-replicated', r.underReplicated, r.underReplicated > 0),
    count('unavailable', r.unavailable, r.unavailable > 0),
    count('repairs in flight', inFlight.length, false),
    count('lost members removed', r.lostMembersRemoved, false),
    count('gateways down', r.down.length, r.down.length > 0),
    ...r.down.map(d => h('div', { class: 'count bad', 'data-down': d.gateway }, h('b', {}, d.gateway), `${d.lost ? 'lost' : 'down'} since ${fmtTime(d.since)}`)))
  // In flight first, then the most recent that ended.
  const rows = [...inFlight, ...r.repairs.filter(m => m.result !== null)].slice(0, 30)
  fillRows($('repairs'), rows.map(migrationRow), 'no repairs: every block has its copies')
}

let shownBlock = null
function renderBlock (view, repairs, migrations) {
  const box = $('block-view')
  if (shownBlock === null) { box.replaceChildren(); return }
  if (view.status === 'fulfilled' && view.value === null) return // asked for while this poll was under way: the next one shows it
  if (view.status !== 'fulfilled') { box.replaceChildren(h('p', { class: 'result-bad' }, `${shownBlock}: ${view.reason.message}`)); return }
  const v = view.value
  const loc = v.location
  // Repairs are migrations too: one row per id.
  const moving = [...new Map([...(repairs ?? []), ...(migrations ?? [])].filter(m => m.result === null && `${m.volume}/${m.block}` === shownBlock).map(m => [m.id, m])).values()]
  const members = loc.members ?? (loc.gateway ? [loc.gateway] : [])
  const inSync = loc.inSync ?? members
  const replicas = loc.replicas ?? members.map(g => ({ gateway: g, state: 'in-sync', healthy: null, version: null }))
  const factor = repairs === null ? null : replicationFactor
  box.replaceChildren(h('div', { 'data-block': shownBlock },
    h('dl', { class: 'kv' },
      h('dt', {}, 'block'), h('dd', {}, shownBlock),
      h('dt', {}, 'placed'), h('dd', {}, loc.placed ? 'yes' : 'no (by hash)'),
      h('dt', {}, 'phase'), h('dd', {}, loc.phase ?? '–'),
      h('dt', {}, 'epoch'), h('dd', {}, loc.epoch ?? '–'),
      h('dt', {}, 'copies in sync'), h('dd', { class: factor !== null && inSync.length < factor ? 'result-bad' : 'result-ok', 'data-in-sync': inSync.length },
        `${inSync.length}${factor === null ? '' : ` of ${factor}`}${factor !== null && inSync.length < factor ? ' — under-replicated' : ''}`),
      h('dt', {}, 'accesses'), h('dd', {}, v.access ? Object.entries(v.access.sites).map(([s, x]) => `${s} ${num(x)}`).join(', ') || '–' : '–')),
    h('table', { id: 'block-replicas' }, h('thead', {}, h('tr', {}, h('th', {}, 'member'), h('th', {}, 'state'), h('th', {}, 'gateway health'), h('th', {}, 'version held'))),
      h('tbody', {}, ...replicas.map((m, i) => {
        // An out-of-sync member a move or repair is copying to is joining; one still queued is just out of sync.
        const to = moving.find(x => x.to === m.gateway)
        const state = m.state === 'out-of-sync' && to !== undefined && to.phase !== 'queued' ? 'joining' : m.state
        return h('tr', { 'data-member': m.gateway },
          h('td', {}, m.gateway, i === 0 ? ' (preferred)' : ''), h('td', { class: `state-${state}` }, state, to ? ` (${to.reason?.startsWith('repair') ? 'repair' : 'move'} ${to.phase})` : ''),
          h('td', {}, m.healthy === null ? '–' : m.healthy ? 'healthy' : 'down'), h('td', {}, m.version ?? '–'))
      }))),
    moving.length ? h('table', {}, h('thead', {}, h('tr', {}, ...['id', 'block', 'from → to', 'reason', 'phase', 'progress', 'bytes', 'rate', 'ETA', 'result'].map(c => h('th', {}, c)))), h('tbody', {}, ...moving.map(migrationRow))) : ''))
}

function renderPlacement (p) {
  if (p === null) { $('placement-summary').textContent = '(no planner in this process)'; return }
  const m = p.model
  $('placement-summary').textContent = !p.enabled ? 'first-touch placement is off' : m === null ? 'no model yet: new blocks go to their writer\'s site' : `version ${m.version}`
  const ce = m?.heldOut?.crossEntropy
  $('placement-model').replaceChildren(
    h('dt', {}, 'version'), h('dd', { 'data-model-version': m?.version ?? 0 }, m === null ? 'none' : String(m.version)),
    h('dt', {}, 'source'), h('dd', {}, m === null ? '–' : `${m.source}, trained ${m.trainedAt}`),
    h('dt', {}, 'embedder'), h('dd', {}, m?.embedder ?? p.embedder ?? '–'),
    h('dt', {}, 'examples'), h('dd', {}, m === null ? '–' : String(m.examples)),
    h('dt', {}, 'held out'), h('dd', {}, ce ? `${m.heldOut.blocks} blocks, cross-entropy ${num(ce.model, 3)} (prior ${num(ce.prior, 3)}${ce.previous === null ? '' : `, previous ${num(ce.previous, 3)}`})` : '–'),
    h('dt', {}, 'table published'), h('dd', {}, p.table ? `${fmtTime(p.table.publishedAt)}: model v${p.table.modelVersion}, ${p.table.volumes} volumes${p.table.exclude.length ? `, excluding ${p.table.exclude.join(', ')}` : ''}` : '–'),
    h('dt', {}, 'history'), h('dd', {}, `${p.history.firstWrites} first writes (max ${p.history.max})${p.retraining ? ', retraining now' : ''}`),
    p.lastLoadError ? [h('dt', {}, 'load error'), h('dd', { class: 'result-bad' }, `${p.lastLoadError.message} [${p.lastLoadError.code}]`)] : '')
  const total = p.decisions.model + p.decisions.origin + p.decisions.hash
  const labels = { model: 'the model', origin: 'the writer\'s site', hash: 'hashing' }
  fillRows($('placement-decisions'), Object.entries(labels).map(([k, label]) => h('tr', { 'data-decision': k },
    h('td', {}, label), h('td', { class: 'num' }, String(p.decisions[k])), h('td', { class: 'num' }, total ? `${Math.round((100 * p.decisions[k]) / total)}%` : '–'))), '')
  fillRows($('placement-retrains'), p.recentRetrains.slice(0, 5).map(r => h('tr', {},
    h('td', {}, fmtTime(r.at)), h('td', {}, r.reason), h('td', { class: r.swapped ? 'result-ok' : '' }, r.swapped ? 'yes' : `no${r.why ? ` (${r.why})` : ''}`),
    h('td', { class: 'num' }, r.examples), h('td', {}, r.crossEntropy ? `${num(r.crossEntropy.candidate, 3)} / ${num(r.crossEntropy.prior, 3)} / ${num(r.crossEntropy.previous, 3)}` : '–'), h('td', {}, r.version ?? '–'))), 'no retrain yet')
}

function renderDecisions (rounds, decisions) {
  $('rounds').tBodies[0].replaceChildren(...rounds.slice(-10).reverse().map(r => h('tr', {},
    h('td', {}, fmtTime(r.at)), h('td', { class: 'num' }, r.scanned), h('td', { class: 'num' }, r.candidates), h('td', { class: 'num' }, r.moves), h('td', { class: 'num' }, fmtBytes(r.bytes)),
    h('td', {}, Object.entries(r.skipped).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || '–'))))
  $('decisions').tBodies[0].replaceChildren(...decisions.map(d => h('tr', {},
    h('td', {}, fmtTime(d.at)), h('td', {}, d.gateway), h('td', {}, d.event), h('td', {}, d.state), h('td', {}, d.reason, d.error ? ` (${d.error})` : ''),
    h('td', {}, `score ${num(d.inputs.score)} [${num(d.inputs.lower)}, ${num(d.inputs.upper)}], conf ${num(d.inputs.confidence)}, trend ${d.inputs.trend?.direction ?? '–'}${d.inputs.limitingSignal ? `, ${d.inputs.limitingSignal}` : ''}`))))
}

function renderAffinity (profile, sites) {
  const head = h('tr', {}, h('th', {}, 'volume'), ...sites.map(s => h('th', {}, s)))
  const rows = profile.volumes.map(v => {
    const share = new Map(v.topSites.map(s => [s.key, s.share]))
    return h('tr', {}, h('td', {}, v.volume), ...sites.map(s => {
      const x = share.get(s) ?? 0
      return h('td', { class: 'cell', title: `${v.volume} from ${s}: ${(100 * x).toFixed(0)}%`, style: { background: `rgba(9,105,218,${x.toFixed(3)})`, color: x > 0.5 ? '#fff' : '#1f2328' } }, `${(100 * x).toFixed(0)}%`)
    }))
  })
  $('heatmap').replaceChildren(h('thead', {}, head), h('tbody', {}, ...rows))
  $('hot').tBodies[0].replaceChildren(...profile.blocks.map(b => h('tr', {},
    h('td', {}, `${b.volume}/${b.block}`), h('td', { class: 'num' }, num(b.score, 1)), h('td', { class: 'num' }, b.reads), h('td', { class: 'num' }, b.writes),
    h('td', {}, b.topSites[0] ? `${b.topSites[0].key} (${(100 * b.topSites[0].share).toFixed(0)}%)` : '–'), h('td', { class: 'num' }, b.locality === null ? '–' : `${(100 * b.locality).toFixed(0)}%`))))
}

// ───────────────────────────── the loop ─────────────────────────────

let refreshing = null
async function refresh () {
  refreshing ??= (async () => {
    const [ready, gateways, planner, health, migrations, rebalancer, decisions, profile, repairs, placement, block] = await Promise.allSettled([
      get('/readyz').catch(e => e.status === 503 ? { status: 'not ready', reasons: [e.message], degraded: [] } : Promise.reject(e)),
      get('/v1/gateways'), get('/v1/planner'), get('/v1/health'), get('/v1/migrations?limit=30'),
      get('/v1/rebalancer'), get('/v1/health/decisions?limit=20'), get('/v1/profile?limit=20'),
      get('/v1/repairs'), get('/v1/placement'),
      shownBlock === null ? null : get(`/v1/blocks/${shownBlock.split('/').map(encodeURIComponent).join('/')}`)
    ])
    renderHeader(ready, planner)
    const gws = gateways.status === 'fulfilled' ? gateways.value.gateways : lastGateways
    lastGateways = gws
    const rep = repairs.status === 'fulfilled' ? repairs.value : null
    if (rep !== null) replicationFactor = rep.factor
    renderFleet(gws, planner.status === 'fulfilled' ? planner.value : null, rep)
    renderReplicas(rep)
    renderBlock(block, rep?.repairs ?? null, migrations.status === 'fulfilled' ? migrations.value.migrations : [])
    renderPlacement(placement.status === 'fulfilled' ? placement.value : null)
    const histories = new Map()
    if (health.status === 'fulfilled' && health.value.enabled) {
      const hs = await Promise.allSettled(health.value.gateways.map(g => get(`/v1/health/${encodeURIComponent(g.gateway)}`)))
      for (const r of hs) if (r.status === 'fulfilled') histories.set(r.value.gateway, r.value.history)
    }
    renderHealth(health.status === 'fulfilled' ? health.value : null, histories)
    if (migrations.status === 'fulfilled') renderMigrations(migrations.value.migrations)
    if (rebalancer.status === 'fulfilled' || decisions.status === 'fulfilled') {
      renderDecisions(rebalancer.status === 'fulfilled' ? rebalancer.value.rounds : [], decisions.status === 'fulfilled' ? decisions.value.decisions : [])
    }
    const sites = [...new Set(gws.map(g => g.site))]
    if (profile.status === 'fulfilled') renderAffinity(profile.value, sites)
    document.body.dataset.loaded = 'true'
  })().finally(() => { refreshing = null })
  return refreshing
}

$('token').value = token
$('token-form').addEventListener('submit', e => {
  e.preventDefault()
  token = $('token').value.trim()
  sessionStorage.setItem('ferry.token', token)
  notice(token === '' ? 'read-only: no token' : 'token set for this tab (actions will send it)')
})
$('token-clear').addEventListener('click', () => {
  token = ''
  $('token').value = ''
  sessionStorage.removeItem('ferry.token')
  notice('token forgotten: read-only')
})
$('pause').addEventListener('click', () => act('Pause all data movement', 'POST', '/v1/planner/pause'))
$('resume').addEventListener('click', () => act('Resume data movement', 'POST', '/v1/planner/resume'))
$('block-form').addEventListener('submit', e => {
  e.preventDefault()
  shownBlock = $('block-key').value.trim()
  void refresh()
})
$('move-form').addEventListener('submit', e => {
  e.preventDefault()
  const [volume, block] = $('move-block').value.trim().split('/')
  const to = $('move-to').value
  const body = { volume, ...(block ? { block } : {}), ...(to ? { to } : {}) }
  void act(`Move ${block ? `${volume}/${block}` : `every block of ${volume}`} to ${to || 'its best gateway'}`, 'POST', '/v1/migrations', body)
})

void refresh()
setInterval(() => { void refresh() }, POLL_MS)
