// The reviewer's replay of a room: the recorded updates applied to a local Yjs document up to
// the playhead, with the editor (read-only) and the output pane showing that moment, a
// scrubber with markers (runs, pastes, focus losses, chat, round events), playback at 1x to
// 64x with idle stretches skipped, recorded video in sync, a provenance view of the code and,
// for a follow-up seeded from a take-home, the diff against the code as submitted.

import './room.css'
import './replay.css'
import * as Y from 'yjs'
import { EditorView, basicSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { languageFor } from './workspace.js'
import { OutputPane } from './outputs.js'
import { h, clock, fatal } from './ui.js'
import { diffView } from './seeddiff.js'
import { ScorecardPanel } from './scorecard.js'

const CHECKPOINT_EVERY = 500
const IDLE_GAP_MS = 4000 // recording time with nothing happening that playback skips
const SPEEDS = [1, 2, 4, 8, 16, 32, 64]
const MARKERS = {
  run: 'run',
  'signal.paste': 'paste',
  'signal.blur': 'focus',
  'signal.visibility': 'focus',
  'signal.fullscreen_exit': 'focus',
  chat: 'chat',
  'round.live': 'round',
  'round.ended': 'round',
  'round.warning': 'round'
}
const ORIGIN_LABELS = { seed: 'given', typed: 'typed', paste: 'pasted' }

function base64Bytes (text) {
  const raw = atob(text)
  const bytes = new Uint8Array(raw.length)
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i)
  return bytes
}

class ReviewApi {
  constructor (roomId, token) {
    this.base = `/api/rooms/${encodeURIComponent(roomId)}`
    this.token = token
  }

  async get (what, params = {}) {
    return this._call('GET', what, params)
  }

  async post (what, body) {
    return this._call('POST', what, {}, body)
  }

  async _call (method, what, params, body) {
    const query = new URLSearchParams({ token: this.token, ...params })
    const response = await fetch(`${this.base}/${what}?${query}`, body === undefined ? { method }
      : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}))
      throw new Error(problem.detail ?? response.statusText)
    }
    return response.json()
  }

  recordingUrl (name) {
    return `${this.base}/recordings/${encodeURIComponent(name)}?token=${encodeURIComponent(this.token)}`
  }

  /** Every item of the timeline, page after page. */
  async timeline () {
    const items = []
    let cursor = null
    let participants = {}
    do {
      const page = await this.get('timeline', cursor ? { cursor } : {})
      items.push(...page.items)
      participants = page.participants
      cursor = page.next
    } while (cursor)
    return { items, participants }
  }
}

/** A Yjs document moved to any point of the recording: forward by applying updates, back
 * from the nearest checkpoint. */
class Recording {
  constructor (updates) {
    this.updates = updates
    this.checkpoints = new Map()
    this.doc = new Y.Doc()
    this.index = 0
    this.onRebuild = () => {}
  }

  /** Number of updates at or before `at`. */
  countUntil (at) {
    let lo = 0
    let hi = this.updates.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.updates[mid].at <= at) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  seek (at) {
    const target = Math.max(1, this.countUntil(at)) // never before the seed
    if (target < this.index) {
      let from = 0
      for (const index of this.checkpoints.keys()) if (index <= target && index > from) from = index
      this.doc = new Y.Doc()
      if (from > 0) Y.applyUpdate(this.doc, this.checkpoints.get(from))
      this.index = from
      this._forward(target)
      this.onRebuild(this.doc)
    } else {
      this._forward(target)
    }
  }

  _forward (target) {
    this.doc.transact(() => {
      while (this.index < target) {
        Y.applyUpdate(this.doc, this.updates[this.index].bytes)
        this.index++
        if (this.index % CHECKPOINT_EVERY === 0 && !this.checkpoints.has(this.index)) {
          this.checkpoints.set(this.index, Y.encodeStateAsUpdate(this.doc))
        }
      }
    })
  }
}

class Replay {
  constructor (config, token) {
    this.config = config
    this.api = new ReviewApi(config.room.id, token)
    this.playing = false
    this.speed = 8
    this.skipIdle = true
    this.file = null
    this.view = null
    this.mode = 'code' // or 'provenance', 'diff'
  }

  async start () {
    const { items, participants } = await this.api.timeline()
    this.participants = participants
    const updates = items.filter((i) => i.type === 'update')
      .map((i) => ({ at: i.at, author: i.author, bytes: base64Bytes(i.update) }))
    this.events = items.filter((i) => i.type !== 'update')
    if (!updates.length) throw new Error('this room has no recording')
    this.recording = new Recording(updates)
    this.begin = updates[0].at
    this.end = Math.max(updates.at(-1).at, ...this.events.map((e) => e.at))
    this.markers = this.events.filter((e) => MARKERS[e.type] &&
      !(e.type === 'signal.visibility' && e.data.state !== 'hidden'))
    this.times = Array.from(new Set([...updates.map((u) => u.at), ...this.events.map((e) => e.at)]))
      .sort((a, b) => a - b)
    this._layout()
    this.recording.seek(this.end) // builds the checkpoints once
    this.recording.onRebuild = (doc) => this._attach(doc)
    this._attach(this.recording.doc)
    this.seek(this.begin)
    this.showIntegrity()
    this.scorecard.show()
  }

  async showIntegrity () {
    let report
    try {
      report = await this.api.get('integrity')
    } catch (error) {
      this.el.integrity.replaceChildren(h('p', { class: 'error' }, error.message))
      return
    }
    const flags = report.signals.map((s) => h('li', {
      class: s.dismissed ? 'dismissed' : '', 'data-signal': s.signal
    },
    h('strong', {}, `${s.signal.replaceAll('_', ' ')} `),
    h('span', { class: 'weight' }, s.dismissed ? 'dismissed' : `+${s.contribution}`),
    h('p', {}, s.detail),
    h('p', { class: 'times' }, s.times.map((t) => h('button', {
      class: 'time', onclick: () => this.seek(t)
    }, this._time(t)))),
    s.dismissed
      ? h('p', { class: 'note' }, `Dismissed: ${s.dismissed.note}`)
      : h('button', { class: 'dismiss', onclick: () => this.dismiss(s) }, 'Dismiss…')))
    const similar = report.similarity.map((m) => h('li', { 'data-room': m.room },
      `${Math.round(m.share * 100)}% of this code matches room ${m.room} (${m.regions.length} region(s))`))
    this.el.integrity.replaceChildren(
      h('p', { class: 'score' }, h('span', { id: 'integrity-score' }, String(report.score)), ' / 100'),
      flags.length ? h('ul', { class: 'flags' }, flags) : h('p', {}, 'No signal fired.'),
      similar.length ? h('ul', { class: 'similar' }, similar) : null,
      h('p', { class: 'limits' }, report.limits))
  }

  async dismiss (flag) {
    const note = window.prompt(`Why is "${flag.signal.replaceAll('_', ' ')}" innocent here?`)
    if (!note) return
    try {
      await this.api.post('integrity/dismissals', { signal: flag.signal, at: flag.times[0], note })
    } catch (error) {
      window.alert(error.message)
    }
    await this.showIntegrity()
  }

  // -- layout ----------------------------------------------------------------------------------

  _layout () {
    const { room, participant } = this.config
    this.scorecard = new ScorecardPanel(this.api)
    this.el = {
      tabs: h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Files' }),
      editor: h('div', { class: 'editor read-only', id: 'replay-editor' }),
      overlay: h('div', { id: 'replay-overlay', class: 'overlay', hidden: true }),
      outputs: h('div', { id: 'outputs', class: 'outputs' }),
      videos: h('div', { id: 'videos', class: 'tiles' }),
      events: h('ol', { id: 'event-list', class: 'event-list' }),
      integrity: h('div', { id: 'integrity', class: 'integrity' }, 'Loading…'),
      playhead: h('span', { id: 'playhead', class: 'playhead' }),
      scrubber: h('input', { id: 'scrubber', type: 'range', min: this.begin, max: this.end,
        step: 1, value: this.begin, 'aria-label': 'Playhead' }),
      markers: h('div', { class: 'markers' }),
      play: h('button', { id: 'play', class: 'primary', onclick: () => this.toggle() }, '▶ Play'),
      speed: h('select', { id: 'speed', 'aria-label': 'Speed',
        onchange: (e) => { this.speed = Number(e.target.value) } },
      SPEEDS.map((s) => h('option', { value: s, selected: s === this.speed }, `${s}x`)))
    }
    this.el.scrubber.addEventListener('input', (e) => this.seek(Number(e.target.value)))
    const skip = h('input', { type: 'checkbox', id: 'skip-idle', checked: true,
      onchange: (e) => { this.skipIdle = e.target.checked } })
    const modes = h('div', { class: 'modes' },
      h('button', { id: 'mode-code', onclick: () => this.setMode('code') }, 'Code'),
      h('button', { id: 'mode-provenance', onclick: () => this.setMode('provenance') }, 'Provenance'),
      room.seeded_from
        ? h('button', { id: 'mode-diff', onclick: () => this.setMode('diff') }, 'Changes since the take-home')
        : null)
    const controls = h('div', { class: 'player' },
      this.el.play, this.el.speed,
      h('label', { class: 'skip' }, skip, ' skip idle'),
      h('button', { id: 'prev-marker', title: 'Previous marker', onclick: () => this.jumpMarker(-1) }, '‹ Prev'),
      h('div', { class: 'scrub' }, this.el.markers, this.el.scrubber),
      h('button', { id: 'next-marker', title: 'Next marker', onclick: () => this.jumpMarker(1) }, 'Next ›'),
      this.el.playhead)
    for (const marker of this.markers) {
      const left = ((marker.at - this.begin) / Math.max(1, this.end - this.begin)) * 100
      const kind = MARKERS[marker.type]
      this.el.markers.append(h('button', {
        class: `marker ${kind}`, style: `left:${left}%`, 'data-kind': kind, 'data-at': marker.at,
        title: `${this._describe(marker)} at ${this._time(marker.at)}`,
        onclick: () => this.seek(marker.at)
      }))
      this.el.events.append(h('li', { class: kind, 'data-at': marker.at, onclick: () => this.seek(marker.at) },
        h('time', {}, this._time(marker.at)), ' ', this._describe(marker)))
    }
    for (const media of this.events.filter((e) => e.type === 'media.started')) {
      const video = h('video', { src: this.api.recordingUrl(media.data.file), muted: true,
        preload: 'auto', 'data-start': media.data.started_at })
      video.muted = true
      this.el.videos.append(h('figure', { class: 'tile remote' }, video,
        h('figcaption', {}, this._name(media.author))))
    }
    const header = h('header', { class: 'topbar' },
      h('span', { class: 'brand' }, 'ClarityHire replay'),
      h('span', { class: 'room-id' }, `${room.kind} · ${room.language} · ${room.id}`),
      h('span', { class: 'me' }, `${participant.name} (reviewer)`))
    const main = h('main', { class: 'room replay' },
      h('section', { class: 'work' }, this.el.tabs, modes, this.el.editor, this.el.overlay, controls),
      h('section', { class: 'side' },
        this.el.videos.childElementCount
          ? h('div', { class: 'panel call-panel' }, h('h2', {}, 'Video'), this.el.videos) : null,
        h('div', { class: 'panel output-panel' }, h('h2', {}, 'Output'), this.el.outputs),
        h('div', { class: 'panel integrity-panel' }, h('h2', {}, 'Integrity'), this.el.integrity),
        h('div', { class: 'panel scorecard-panel' }, h('h2', {}, 'Scorecard'), this.scorecard.el),
        h('div', { class: 'panel events-panel' }, h('h2', {}, 'Moments'), this.el.events)))
    document.getElementById('app').replaceChildren(header, main)
  }

  _name (author) {
    return this.participants[author]?.name ?? (author === 'system' ? 'server' : author)
  }

  _time (at) {
    return clock(at - this.begin)
  }

  _describe (event) {
    const who = this._name(event.author)
    switch (event.type) {
      case 'run': return `${who} ran ${event.data.file}${event.data.selection ? ' (selection)' : ''}`
      case 'signal.paste': return `${who} pasted ${event.data.length} characters`
      case 'chat': return `${who}: ${event.data.text}`
      case 'round.live': return 'Round started'
      case 'round.ended': return `Round ended (${event.data.ended_reason ?? ''})`
      case 'round.warning': return `${Math.round(event.data.seconds_left / 60)} minutes left`
      default: return `${who} left the page (${event.type.replace('signal.', '')})`
    }
  }

  // -- state at the playhead ---------------------------------------------------------------

  _attach (doc) {
    this.files = doc.getMap('files')
    this.meta = doc.getMap('meta')
    this.tabsShown = null
    this.pane = new OutputPane(this.el.outputs, doc.getArray('outputs'))
    this.files.observeDeep(() => this._render())
  }

  seek (at) {
    this.at = Math.min(this.end, Math.max(this.begin, at))
    this.recording.seek(this.at)
    this.el.scrubber.value = this.at
    this.el.playhead.textContent = `${clock(this.at - this.begin)} / ${clock(this.end - this.begin)}`
    this.el.playhead.dataset.at = this.at
    this._render()
    this._syncVideo()
    // Provenance and diffs come from the server: fetched when the playhead rests.
    if (this.mode !== 'code' && !this.playing) this._showMode()
  }

  _render () {
    const names = Array.from(this.files.keys()).sort()
    const entry = this.meta.get('entry')
    if (!names.includes(this.file)) this.file = names.includes(entry) ? entry : names[0] ?? null
    const shown = `${this.file}|${names.join('|')}`
    if (shown !== this.tabsShown) { // not every frame: a click must land on the same button
      this.tabsShown = shown
      this.el.tabs.replaceChildren(...names.map((name) => h('div', {
        class: `tab${name === this.file ? ' active' : ''}`, 'data-file': name
      }, h('button', { class: 'tab-name', onclick: () => this._openFile(name) }, name))))
    }
    const text = this.file ? this.files.get(this.file)?.toString() ?? '' : ''
    if (!this.view || this.view.file !== this.file) {
      this.view?.destroy()
      this.el.editor.replaceChildren()
      this.view = new EditorView({
        parent: this.el.editor,
        state: EditorState.create({
          doc: text,
          extensions: [basicSetup, languageFor(this.file ?? ''), EditorState.readOnly.of(true),
            EditorView.editable.of(false)]
        })
      })
      this.view.file = this.file
    } else if (this.view.state.doc.toString() !== text) {
      this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } })
    }
  }

  _openFile (name) {
    this.file = name
    this._render()
    if (this.mode !== 'code') this._showMode()
  }

  // -- playback ------------------------------------------------------------------------------

  toggle () {
    this.playing = !this.playing
    this.el.play.textContent = this.playing ? 'Pause' : '▶ Play'
    cancelAnimationFrame(this.frame)
    if (this.playing) {
      if (this.at >= this.end) this.seek(this.begin)
      this.last = performance.now()
      this.frame = requestAnimationFrame((now) => this._tick(now))
    } else if (this.mode !== 'code') {
      this._showMode()
    }
    this._syncVideo()
  }

  _tick (now) {
    if (!this.playing) return
    let next = this.at + (now - this.last) * this.speed
    this.last = now
    if (this.skipIdle) {
      const upcoming = this.times.find((t) => t > this.at)
      if (upcoming !== undefined && upcoming - this.at > IDLE_GAP_MS && next < upcoming - 250) {
        next = upcoming - 250
      }
    }
    this.seek(next)
    if (this.at >= this.end) this.toggle()
    else this.frame = requestAnimationFrame((t) => this._tick(t))
  }

  jumpMarker (direction) {
    const ordered = this.markers.map((m) => m.at)
    const target = direction > 0
      ? ordered.find((at) => at > this.at)
      : ordered.filter((at) => at < this.at).at(-1)
    if (target !== undefined) this.seek(target)
  }

  _syncVideo () {
    for (const video of this.el.videos.querySelectorAll('video')) {
      const offset = (this.at - Number(video.dataset.start)) / 1000
      const inside = offset >= 0 && (!video.duration || offset <= video.duration)
      if (!inside) { video.pause(); continue }
      if (Math.abs(video.currentTime - offset) > 0.4) video.currentTime = offset
      if (this.playing && this.speed <= 16) {
        video.playbackRate = this.speed
        video.play().catch(() => {})
      } else {
        video.pause()
      }
    }
  }

  // -- provenance and the take-home diff -----------------------------------------------------

  setMode (mode) {
    this.mode = mode
    for (const id of ['code', 'provenance', 'diff']) {
      document.getElementById(`mode-${id}`)?.classList.toggle('active', id === mode)
    }
    this._showMode()
  }

  async _showMode () {
    const overlay = this.el.overlay
    this.el.editor.hidden = this.mode !== 'code'
    overlay.hidden = this.mode === 'code'
    if (this.mode === 'code') return
    const at = Math.round(this.at)
    try {
      if (this.mode === 'provenance') {
        const result = await this.api.get('provenance', { at })
        if (this.mode !== 'provenance' || Math.round(this.at) !== at) return
        overlay.replaceChildren(this._provenanceView(result))
      } else {
        const result = await this.api.get('diff', { from: this.config.room.created_at, to: at })
        if (this.mode !== 'diff' || Math.round(this.at) !== at) return
        overlay.replaceChildren(diffView(result.files))
      }
    } catch (error) {
      overlay.replaceChildren(h('p', { class: 'error' }, error.message))
    }
  }

  _provenanceView ({ files, participants }) {
    const text = this.files.get(this.file)?.toString() ?? ''
    const runs = files[this.file] ?? []
    const authors = Array.from(new Set(runs.map((r) => r.author)))
    const code = h('pre', { id: 'provenance', class: 'provenance' }, runs.map((run) => h('span', {
      class: `origin-${run.origin} author-${authors.indexOf(run.author) % 6}`,
      'data-origin': run.origin,
      'data-author': participants[run.author]?.name ?? run.name,
      title: `${run.name} · ${ORIGIN_LABELS[run.origin]} · ${this._time(run.first_at)}–${this._time(run.last_at)}`
    }, text.slice(run.start, run.start + run.length))))
    const legend = h('p', { class: 'legend' },
      authors.map((a, i) => a === 'system' ? null : h('span', { class: `author-${i % 6}` }, participants[a]?.name ?? a)),
      h('span', { class: 'origin-paste' }, 'pasted'), h('span', { class: 'origin-seed' }, 'given'))
    return h('div', {}, legend, code)
  }
}

const config = JSON.parse(document.getElementById('page-config').textContent)
const token = new URLSearchParams(location.search).get('token')
new Replay(config, token).start().catch((error) => {
  fatal('The recording could not be opened', error.message, 'Reload the page; if it keeps happening, ask the organiser.')
})
