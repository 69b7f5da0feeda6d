// The hiring team's candidate list of one pipeline: each candidate's status and score per
// stage with links to the stage's room (replay; the interviewer's seat of an interview), the
// stage rules and a button that applies them, inviting from pasted CSV, and CSV/JSON export.
//
// The page holds no secret in its URL: the admin key is read from the address's #key=
// fragment (never sent to the server) or typed in, and kept in this tab's sessionStorage.

import './room.css'
import './pipeline.css'
import { h, toast } from './ui.js'

const KEY_STORE = 'clarityhire.admin_key'
const STATUS_LABELS = {
  started: 'in progress',
  submitted: 'submitted, grading',
  scored: 'scored',
  advanced: 'advanced',
  rejected: 'not advanced',
  scheduled: 'room ready',
  completed: 'done, to review'
}

class PipelineApi {
  constructor (pipelineId, key) {
    this.base = `/api/pipelines/${encodeURIComponent(pipelineId)}`
    this.key = key
  }

  async call (method, path, body) {
    const init = { method, headers: { authorization: `Bearer ${this.key}` } }
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json'
      init.body = JSON.stringify(body)
    }
    const response = await fetch(`${this.base}${path}`, init)
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}))
      const error = new Error(problem.detail ?? response.statusText)
      error.status = response.status
      throw error
    }
    return response
  }
}

class PipelinePage {
  constructor (config) {
    this.id = config.pipeline
    this.filter = ''
    this.data = null
    // Kept across re-renders, so that links just shown stay on screen after the list reloads.
    const inviteText = h('textarea', { id: 'invite-csv', rows: 3, placeholder: 'Ada Lovelace, ada@example.org' })
    const inviteOutput = h('div', { id: 'invite-output' })
    this.el = {
      advanced: h('div', { id: 'advance-output', class: 'advance-output', role: 'status' }),
      invite: h('details', { class: 'invite' },
        h('summary', {}, 'Invite candidates'),
        h('p', {}, 'One candidate per line: name, e-mail. Nothing is imported while any line is wrong.'),
        inviteText,
        h('button', { id: 'invite', class: 'primary', onclick: () => this.invite(inviteText.value, inviteOutput) }, 'Invite'),
        inviteOutput)
    }
  }

  start () {
    const fromFragment = new URLSearchParams(window.location.hash.slice(1)).get('key')
    if (fromFragment) {
      sessionStorage.setItem(KEY_STORE, fromFragment)
      history.replaceState(null, '', window.location.pathname) // out of the address bar
    }
    const key = sessionStorage.getItem(KEY_STORE)
    if (key) this.open(key)
    else this.askKey()
  }

  askKey (reason) {
    const input = h('input', { id: 'admin-key', type: 'password', autocomplete: 'off', required: true,
      placeholder: 'admin key', 'aria-label': 'Admin key' })
    const form = h('form', { id: 'key-form', class: 'key-form' },
      h('h1', {}, 'Candidates'),
      reason ? h('p', { class: 'error' }, reason) : null,
      h('p', {}, 'Enter the server\'s admin key (setting admin_key). It stays in this tab only.'),
      input, h('button', { type: 'submit', class: 'primary' }, 'Open'))
    form.addEventListener('submit', (event) => {
      event.preventDefault()
      sessionStorage.setItem(KEY_STORE, input.value.trim())
      this.open(input.value.trim())
    })
    document.getElementById('app').replaceChildren(form)
    input.focus()
  }

  async open (key) {
    this.api = new PipelineApi(this.id, key)
    try {
      await this.refresh()
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        sessionStorage.removeItem(KEY_STORE)
        this.askKey(error.message)
      } else {
        document.getElementById('app').replaceChildren(h('p', { class: 'error page-error' }, error.message))
      }
    }
  }

  async refresh () {
    this.data = await (await this.api.call('GET', '/candidates')).json()
    this.render()
  }

  // -- actions ---------------------------------------------------------------------------------

  async advance (stage) {
    const rule = stage.advance?.percentile !== undefined
      ? `everyone above the ${stage.advance.percentile}th percentile`
      : stage.advance?.score !== undefined ? `everyone scoring ${stage.advance.score} or more` : 'everyone scored'
    if (!window.confirm(`Advance ${rule} from "${stage.id}" and reject the others?`)) return
    let result
    try {
      result = await (await this.api.call('POST', `/stages/${encodeURIComponent(stage.id)}/advance`)).json()
    } catch (error) {
      toast(error.message, 'error')
      return
    }
    await this.refresh()
    const names = Object.fromEntries(this.data.candidates.map((c) => [c.id, `${c.name} <${c.email}>`]))
    this.el.advanced.replaceChildren(
      h('p', {}, `${stage.id}: ${result.advanced.length} advanced, ${result.rejected.length} not advanced.`),
      result.invited.length
        ? h('div', {}, h('p', {}, `Send each their invitation to "${result.next_stage}":`),
          h('ul', { class: 'invite-links' }, result.invited.map((i) => h('li', { 'data-candidate': i.candidate_id },
            `${names[i.candidate_id]}: `, h('code', {}, i.invite_url)))))
        : null,
      result.live_rooms.length
        ? h('div', {}, h('p', {}, `Interview rooms for "${result.next_stage}" (send the candidate their link):`),
          h('ul', { class: 'room-links' }, result.live_rooms.map((r) => h('li', { 'data-candidate': r.candidate_id },
            `${names[r.candidate_id]}: `, h('a', { class: 'join', href: r.interviewer_url, target: '_blank', rel: 'noopener' }, 'join as interviewer'),
            ' · candidate link ', h('code', {}, r.candidate_url)))))
        : null)
  }

  async invite (text, output) {
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean)
    const candidates = lines.map((line) => {
      const [name, email] = line.split(',').map((part) => (part ?? '').trim())
      return { name, email: email ?? '' }
    })
    let result
    try {
      result = await (await this.api.call('POST', '/candidates', { candidates })).json()
    } catch (error) {
      output.replaceChildren(h('p', { class: 'error' }, error.message))
      return
    }
    output.replaceChildren(h('p', {}, `Invited ${result.invited.length} to "${result.stage}". Send each their link:`),
      h('ul', { id: 'invite-links' }, result.invited.map((i) => h('li', {},
        `${i.name} <${i.email}>: `, h('code', {}, i.invite_url)))))
    await this.refresh()
  }

  async download (format) {
    try {
      const response = await this.api.call('GET', `/export?format=${format}`)
      const link = h('a', { href: URL.createObjectURL(await response.blob()),
        download: `${this.id}-candidates.${format}` })
      link.click()
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000)
    } catch (error) {
      toast(error.message, 'error')
    }
  }

  // -- rendering -------------------------------------------------------------------------------

  render () {
    const { title, stages, candidates } = this.data
    const search = h('input', { id: 'filter', type: 'search', placeholder: 'Filter by name, e-mail or status',
      value: this.filter, 'aria-label': 'Filter' })
    search.addEventListener('input', () => { this.filter = search.value; this._fillRows() })
    this.rows = h('tbody', {})
    const advanceable = stages.slice(0, -1).filter((s) => s.type === 'mcq' || s.type === 'task' || s.advance)
    document.getElementById('app').replaceChildren(
      h('header', { class: 'topbar' },
        h('span', { class: 'brand' }, 'ClarityHire'),
        h('span', { class: 'room-id' }, `pipeline ${this.id}`),
        h('button', { id: 'sign-out', onclick: () => { sessionStorage.removeItem(KEY_STORE); this.askKey() } }, 'Forget key')),
      h('main', { class: 'pipeline' },
        h('h1', { id: 'pipeline-title' }, title),
        h('p', { class: 'summary', id: 'summary' }, this._summary(stages, candidates)),
        h('div', { class: 'toolbar' }, search,
          advanceable.map((s) => h('button', { class: 'advance', 'data-stage': s.id, onclick: () => this.advance(s) },
            `Advance ${s.id}`)),
          h('button', { id: 'export-csv', onclick: () => this.download('csv') }, 'Export CSV'),
          h('button', { id: 'export-json', onclick: () => this.download('json') }, 'Export JSON'),
          h('button', { id: 'reload', onclick: () => this.refresh() }, 'Reload')),
        this.el.advanced,
        h('table', { id: 'candidates', class: 'candidates' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Candidate'),
            stages.map((s) => h('th', { 'data-stage': s.id }, `${s.id}`, h('small', {}, ` ${s.type}`))))),
          this.rows),
        this.el.invite))
    this._fillRows()
  }

  _summary (stages, candidates) {
    const counts = stages.map((s) => {
      const reached = candidates.filter((c) => c.stages[s.id]).length
      return `${s.id}: ${reached}`
    })
    return `${candidates.length} candidate(s) · ${counts.join(' · ')}`
  }

  _fillRows () {
    const { stages, candidates } = this.data
    const needle = this.filter.trim().toLowerCase()
    const shown = candidates.filter((c) => !needle || [c.name, c.email,
      ...Object.values(c.stages).map((r) => STATUS_LABELS[r.status] ?? r.status)]
      .some((text) => text.toLowerCase().includes(needle)))
    this.rows.replaceChildren(...shown.map((c) => h('tr', { 'data-candidate': c.id },
      h('td', {}, h('strong', { class: 'name' }, c.name), h('br'), h('small', {}, c.email)),
      stages.map((s) => this._cell(c.stages[s.id], s)))))
  }

  _cell (result, stage) {
    if (!result) return h('td', { class: 'empty', 'data-stage': stage.id })
    const links = result.links ?? {}
    const review = result.details?.review
    return h('td', { class: `status-${result.status}`, 'data-stage': stage.id, 'data-status': result.status },
      h('span', { class: 'status' }, STATUS_LABELS[result.status] ?? result.status),
      result.score !== null && result.score !== undefined ? h('span', { class: 'score' }, ` ${result.score}`) : null,
      review ? h('small', { class: 'review' }, ` review ${review.mean}/4`) : null,
      h('span', { class: 'links' },
        links.interviewer_url ? h('a', { class: 'join', href: links.interviewer_url, target: '_blank', rel: 'noopener' }, 'Join') : null,
        links.replay_url ? h('a', { class: 'replay', href: links.replay_url, target: '_blank', rel: 'noopener' }, 'Replay') : null))
  }
}

const config = JSON.parse(document.getElementById('page-config').textContent)
new PipelinePage(config).start()
