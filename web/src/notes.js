// The interviewers' private notes: a document of its own (`/rooms/{id}/notes`) that the
// server only opens for interviewers (who write) and reviewers (who read). Candidates' pages
// never build this panel nor open that socket.

import * as Y from 'yjs'
import { EditorView, minimalSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { yCollab } from 'y-codemirror.next'
import { openDocument } from './session.js'
import { h } from './ui.js'

export function mountNotes (el, roomId, token, canWrite) {
  const { doc, provider } = openDocument(roomId, 'notes', token)
  const files = doc.getMap('files')
  const status = h('p', { class: 'notes-status' }, 'Connecting…')
  const box = h('div', { class: 'notes-editor' })
  el.replaceChildren(h('h2', {}, 'Private notes'), status, box)
  let view = null
  let bound = null

  const bind = () => {
    if (!files.has('notes') && canWrite) files.set('notes', new Y.Text())
    const text = files.get('notes')
    if (!(text instanceof Y.Text) || text === bound) return
    bound = text
    view?.destroy()
    view = new EditorView({
      parent: box,
      state: EditorState.create({
        doc: text.toString(),
        extensions: [minimalSetup, EditorView.lineWrapping, yCollab(text, null),
          EditorState.readOnly.of(!canWrite),
          EditorView.contentAttributes.of({ 'aria-label': 'Private notes' })]
      })
    })
  }
  provider.on('sync', (synced) => { if (synced) bind() })
  provider.on('status', ({ status: s }) => {
    status.textContent = s === 'connected'
      ? 'Only interviewers and reviewers see these notes.'
      : 'Reconnecting… notes typed now are kept.'
  })
  provider.on('closed', ({ reason }) => { status.textContent = `Notes unavailable: ${reason}` })
  files.observe(() => { if (provider.synced) bind() })
}
