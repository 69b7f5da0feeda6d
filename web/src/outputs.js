// The output pane: the room's execution records (the `outputs` array, written only by the
// server), rendered for everyone, plus the input box a run's `input()` asks for.

import DOMPurify from 'dompurify'
import { h } from './ui.js'

const SHOWN_RECORDS = 100
// Terminal colour codes in tracebacks: removed, the text is kept.
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g
const STATUS_LABELS = {
  running: 'running…',
  ok: 'done',
  error: 'error',
  interrupted: 'interrupted',
  timeout: 'timed out',
  killed: 'stopped'
}

/** HTML from a run, made safe: no scripts, no event handlers, no forms, links open apart. */
export function sanitize (html) {
  const clean = DOMPurify.sanitize(html, {
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
    // Ids, classes and names could imitate or collide with the page's own elements.
    FORBID_ATTR: ['style', 'id', 'class', 'name'],
    RETURN_DOM_FRAGMENT: true
  })
  for (const link of clean.querySelectorAll('a')) {
    link.setAttribute('target', '_blank')
    link.setAttribute('rel', 'noopener noreferrer')
  }
  return clean
}

function renderItem (item) {
  if (item.type === 'stream') {
    return h('pre', { class: `stream ${item.name === 'stderr' ? 'stderr' : 'stdout'}` }, item.text)
  }
  if (item.type === 'error') {
    const trace = (item.traceback ?? []).join('\n').replace(ANSI, '')
    return h('pre', { class: 'exception' }, trace || `${item.ename}: ${item.evalue}`)
  }
  const data = item.data ?? {}
  if (typeof data['image/png'] === 'string') {
    return h('img', { class: 'figure', alt: data['text/plain'] ?? 'image output',
      src: `data:image/png;base64,${data['image/png'].replace(/\s/g, '')}` })
  }
  if (typeof data['text/html'] === 'string') {
    const box = h('div', { class: 'html-output' })
    box.append(sanitize(data['text/html']))
    return box
  }
  return h('pre', { class: 'result' }, data['text/plain'] ?? '')
}

function renderRecord (record, index) {
  const status = record.status ?? 'running'
  const took = record.ended_at && record.started_at
    ? ` · ${((record.ended_at - record.started_at) / 1000).toFixed(2)} s` : ''
  return h('section', { class: `record ${status}`, 'data-run': record.id, 'data-status': status },
    h('header', {},
      h('span', { class: 'run-no' }, `#${index + 1}`),
      h('span', { class: 'run-file' }, record.file ?? ''),
      h('span', { class: 'run-author' }, record.author_name ?? ''),
      h('span', { class: 'run-status' }, `${STATUS_LABELS[status] ?? status}${took}`)),
    (record.outputs ?? []).map(renderItem),
    record.note ? h('p', { class: 'run-note' }, record.note) : null)
}

export class OutputPane {
  /**
   * @param {HTMLElement} el the pane
   * @param {import('yjs').Array} outputs the room document's `outputs` array
   */
  constructor (el, outputs) {
    this.el = el
    this.outputs = outputs
    this.list = h('div', { class: 'records', 'aria-live': 'polite' })
    this.prompt = h('div', { class: 'input-request', hidden: true })
    el.replaceChildren(this.list, this.prompt)
    this.scheduled = false
    outputs.observeDeep(() => this._schedule())
    this._render()
  }

  /** Whether the newest run is still going (drives the Run and Stop buttons). */
  running () {
    const last = this.outputs.length ? this.outputs.get(this.outputs.length - 1) : null
    return last?.get?.('status') === 'running'
  }

  /** Show the box for a run's `input()`; `send(value)` answers it. */
  askInput ({ prompt, password }, send) {
    const field = h('input', { id: 'stdin', type: password ? 'password' : 'text',
      'aria-label': prompt || 'Input for the running program', autocomplete: 'off' })
    const submit = async (e) => {
      e.preventDefault()
      const value = field.value
      this.prompt.hidden = true
      try { await send(value) } catch (error) { this._promptError(error) }
    }
    this.prompt.replaceChildren(h('form', { onsubmit: submit },
      h('label', { for: 'stdin' }, prompt || 'The program asks for input:'),
      field, h('button', { type: 'submit' }, 'Send')))
    this.prompt.hidden = false
    field.focus()
  }

  _promptError (error) {
    this.prompt.hidden = false
    this.prompt.append(h('p', { class: 'error' }, error.message))
  }

  _schedule () {
    if (this.scheduled) return
    this.scheduled = true
    requestAnimationFrame(() => {
      this.scheduled = false
      this._render()
    })
  }

  _render () {
    const atBottom = this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 40
    const records = this.outputs.toJSON()
    const first = Math.max(0, records.length - SHOWN_RECORDS)
    const nodes = records.slice(first).map((r, i) => renderRecord(r, first + i))
    if (records.length === 0) {
      nodes.push(h('p', { class: 'empty' }, 'Run the code (Ctrl/Cmd+Enter) to see its output here.'))
    }
    this.list.replaceChildren(...nodes)
    if (!this.running()) this.prompt.hidden = true
    if (atBottom) this.el.scrollTop = this.el.scrollHeight
    this.el.dispatchEvent(new CustomEvent('outputs-changed'))
  }
}
