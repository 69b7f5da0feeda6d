// The room page: wires the session (document + control plane) to the panels.
// The server renders a shell with the room's config; the link's token stays in the URL so
// that a reload rejoins.

import './room.css'
import { RoomSession } from './session.js'
import { Workspace } from './workspace.js'
import { OutputPane } from './outputs.js'
import { PeopleList } from './people.js'
import { Chat } from './chat.js'
import { RoundBar } from './round.js'
import { mountNotes } from './notes.js'
import { Call } from './media.js'
import { fileDiffs, diffView } from './seeddiff.js'
import { SignalReporter } from './signals.js'
import { McqView } from './mcq.js'
import { h, toast, fatal } from './ui.js'

const SPEAKERS = new Set(['interviewer', 'candidate'])
const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Offline: reconnecting. Your edits are kept and will be sent.'
}
// What a participant can do about a final close, by code.
const CLOSE_ADVICE = {
  4401: ['Your link is no longer valid', 'Ask the person who invited you for a new link.'],
  4403: ['You cannot open this room', 'Check that you used the link you were sent for this room.'],
  4404: ['This room no longer exists', 'It may have been deleted. Ask the organiser.']
}

function layout (config) {
  const { room, participant } = config
  const el = {
    round: h('div', { class: 'round' }),
    connection: h('span', { id: 'connection', 'data-state': 'connecting', role: 'status' },
      CONNECTION_TEXT.connecting),
    tabs: h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Files' }),
    prompt: h('div', { id: 'prompt', class: 'prompt', hidden: true }),
    notice: h('p', { id: 'editor-notice', class: 'notice', hidden: true }),
    editor: h('div', { class: 'editor' }),
    changes: h('div', { id: 'changes', class: 'overlay', hidden: true }),
    toolbar: h('div', { class: 'toolbar' }),
    call: h('div', { id: 'call', class: 'call' }),
    outputs: h('div', { id: 'outputs', class: 'outputs' }),
    people: h('ul', { id: 'people' }),
    chat: h('div', { id: 'chat', class: 'chat' }),
    notes: config.notes ? h('section', { id: 'notes', class: 'notes' }) : null
  }
  const header = h('header', { class: 'topbar' },
    h('span', { class: 'brand' }, 'ClarityHire'),
    h('span', { class: 'room-id', title: 'Room' }, `${room.kind} · ${room.language} · ${room.id}`),
    el.round,
    h('span', { class: 'me' }, `${participant.name} (${participant.role})`),
    el.connection)
  const main = h('main', { class: 'room' },
    h('section', { class: 'work' }, el.prompt, el.tabs, el.notice, el.editor, el.changes, el.toolbar),
    h('section', { class: 'side' },
      h('div', { class: 'panel call-panel' }, h('h2', {}, 'Call'), el.call),
      h('div', { class: 'panel output-panel' }, h('h2', {}, 'Output'), el.outputs),
      h('div', { class: 'panel people-panel' }, h('h2', {}, 'People'), el.people),
      h('div', { class: 'panel chat-panel' }, h('h2', {}, 'Chat'), el.chat),
      el.notes ? h('div', { class: 'panel notes-panel' }, el.notes) : null))
  document.getElementById('app').replaceChildren(header, main)
  return el
}

/** For a follow-up seeded from a take-home: show what changed since it was submitted. */
function changesToggle (el, workspace, submitted) {
  const button = h('button', { id: 'show-changes', title: 'Compare with the take-home as submitted' },
    'Changes since the take-home')
  const refresh = () => {
    const now = {}
    for (const [name, text] of workspace.files.entries()) now[name] = text.toString()
    el.changes.replaceChildren(diffView(fileDiffs(submitted, now)))
  }
  button.addEventListener('click', () => {
    const showing = el.changes.hidden
    el.changes.hidden = !showing
    el.editor.hidden = showing
    button.classList.toggle('active', showing)
    if (showing) refresh()
  })
  workspace.files.observeDeep(() => { if (!el.changes.hidden) refresh() })
  return button
}

function runToolbar (el, session, workspace, pane, canRun) {
  let off = true
  const run = async (code) => {
    if (off) return // Ctrl/Cmd+Enter obeys the same rule as the buttons
    const { file } = workspace.selection()
    if (!file) { toast('Open a file to run', 'error'); return }
    try {
      await session.request('run', code ? { file, code } : { file })
    } catch (error) {
      toast(`Not run: ${error.message}`, 'error')
    }
  }
  const action = async (event, done) => {
    try {
      await session.request(event, {})
      if (done) toast(done)
    } catch (error) {
      toast(`${event} failed: ${error.message}`, 'error')
    }
  }
  const buttons = {
    runFile: h('button', { id: 'run-file', class: 'primary', title: 'Run the open file (Ctrl/Cmd+Enter)',
      onclick: () => run(null) }, '▶ Run'),
    runSelection: h('button', { id: 'run-selection', title: 'Run the selected lines (Ctrl/Cmd+Enter with a selection)',
      onclick: () => {
        const { code } = workspace.selection()
        if (code) run(code)
        else toast('Select some code first', 'error')
      } }, 'Run selection'),
    interrupt: h('button', { id: 'interrupt', title: 'Interrupt the running code',
      onclick: () => action('interrupt') }, '■ Stop'),
    restart: h('button', { id: 'restart', title: 'Restart the kernel: forget all variables',
      onclick: () => {
        if (window.confirm('Restart the kernel for everyone? Variables are lost.')) action('restart', 'Kernel restarted')
      } }, '↻ Restart')
  }
  const status = h('span', { class: 'kernel-status' })
  el.toolbar.replaceChildren(...Object.values(buttons), status)
  const refresh = (readOnly, execution) => {
    off = !canRun || readOnly || Boolean(execution && !execution.enabled)
    for (const b of Object.values(buttons)) b.disabled = off
    buttons.interrupt.disabled = off || !pane.running()
    status.textContent = execution && !execution.enabled
      ? `Code execution is off: ${execution.reason ?? 'not configured'}`
      : (pane.running() ? 'Running…' : '')
  }
  return { run, refresh }
}

function start () {
  const config = JSON.parse(document.getElementById('page-config').textContent)
  const token = new URLSearchParams(location.search).get('token')
  const { participant } = config
  const canSpeak = SPEAKERS.has(participant.role)
  const el = layout(config)
  const session = new RoomSession(config, token)
  session.awareness.setLocalStateField('user', {
    id: participant.id, name: participant.name, color: '#888', colorLight: '#8883'
  })

  let readOnly = !canSpeak
  let execution = null
  let presenceVersion = 0
  // Only candidates' browsers report signals (the server accepts them from no one else).
  const signals = participant.role === 'candidate' ? new SignalReporter(session) : null
  const workspace = new Workspace({
    doc: session.doc,
    awareness: session.awareness,
    tabs: el.tabs,
    editor: el.editor,
    canEdit: canSpeak,
    onRun: (code) => toolbar.run(code),
    extension: signals ? signals.editorExtension(() => workspace.current) : []
  })
  const pane = new OutputPane(el.outputs, session.doc.getArray('outputs'))
  const toolbar = runToolbar(el, session, workspace, pane, canSpeak)
  if (config.submitted_files) el.toolbar.append(changesToggle(el, workspace, config.submitted_files))
  const people = new PeopleList(el.people, session.awareness, participant)
  const chat = new Chat(el.chat, session, participant, canSpeak)
  const round = new RoundBar(el.round, session, { role: participant.role, kind: config.room.kind },
    (r) => {
      readOnly = !canSpeak || (participant.role === 'candidate' && r.state === 'ended')
      workspace.setReadOnly(readOnly)
      mcq?.setReadOnly(readOnly)
      el.notice.hidden = !readOnly
      el.notice.textContent = canSpeak
        ? 'The round has ended: the code is read-only.'
        : `You are ${participant.role === 'reviewer' ? 'reviewing' : 'observing'}: the code is read-only.`
      toolbar.refresh(readOnly, execution)
    })
  el.outputs.addEventListener('outputs-changed', () => toolbar.refresh(readOnly, execution))
  toolbar.refresh(readOnly, execution)
  const call = new Call(el.call, session, config)
  if (el.notes) mountNotes(el.notes, config.room.id, token, participant.role === 'interviewer')

  // A stage of the hiring funnel: a task's prompt above the editor, or a multiple-choice test
  // in place of it.
  let mcq = null
  session.provider.once('sync', () => {
    const meta = session.doc.getMap('meta')
    if (meta.get('prompt')) {
      el.prompt.hidden = false
      el.prompt.replaceChildren(h('h2', {}, meta.get('title') ?? 'Task'), h('p', {}, meta.get('prompt')))
    }
    if (Array.isArray(meta.get('mcq'))) {
      el.tabs.hidden = true
      el.toolbar.hidden = true
      mcq = new McqView(el.editor, session.doc, meta.get('mcq'))
      mcq.setReadOnly(readOnly)
    } else {
      workspace.start()
    }
  })
  session.on('state', ({ state }) => {
    el.connection.dataset.state = state
    el.connection.textContent = CONNECTION_TEXT[state]
  })
  session.on('closed', ({ code, reason }) => {
    call.leave()
    const [title, advice] = CLOSE_ADVICE[code] ?? ['The room closed this page\'s connection',
      'Reload the page to try again; if it keeps happening, ask the organiser.']
    fatal(title, reason, advice)
  })
  session.on('welcome', (welcome) => {
    const me = welcome.presence.find((p) => p.id === participant.id)
    if (me) {
      session.awareness.setLocalStateField('user', {
        id: participant.id, name: participant.name, color: me.colour, colorLight: `${me.colour}33`
      })
    }
    execution = welcome.execution
    presenceVersion = welcome.presence_version
    people.set(welcome.presence)
    chat.reset(welcome.chat)
    round.set(welcome.round)
  })
  // In a cluster several servers send presence; the highest version is the newest.
  session.on('presence', ({ participants, version }) => {
    if (version < presenceVersion) return
    presenceVersion = version
    people.set(participants)
  })
  session.on('notice', ({ text }) => toast(text, 'warning'))
  session.on('chat', (line) => chat.add(line))
  session.on('round', (r) => {
    round.set(r)
    if (r.state === 'ended') toast('The round has ended')
    else if (r.state === 'live') toast('The round is live')
  })
  session.on('round_warning', ({ seconds_left: left }) =>
    toast(`${Math.round(left / 60)} minute(s) left`, 'warning'))
  session.on('input_request', (request) =>
    pane.askInput(request, (value) => session.request('input', { value })))
  session.on('error', ({ event, reason }) => console.warn(`refused ${event}: ${reason}`))
}

start()
