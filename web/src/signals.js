// What the candidate's browser reports about itself (control event `signal`): pastes into the
// editor (length and SHA-256, never the text), copies, leaving and coming back to the tab.
// These are claims, stored beside the recording for the integrity report; the server never
// shows them to other participants.

import { digest } from 'lib0/hash/sha256'
import { EditorView } from '@codemirror/view'

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')

export class SignalReporter {
  constructor (session) {
    this.session = session
    this.pending = [] // reported while offline: exactly the moments that matter
    session.on('state', ({ state }) => { if (state === 'connected') this._flush() })
    window.addEventListener('blur', () => this.send({ type: 'blur' }))
    window.addEventListener('focus', () => this.send({ type: 'focus' }))
    document.addEventListener('visibilitychange', () =>
      this.send({ type: 'visibility', state: document.visibilityState === 'hidden' ? 'hidden' : 'visible' }))
    document.addEventListener('fullscreenchange', () => {
      if (!document.fullscreenElement) this.send({ type: 'fullscreen_exit' })
    })
  }

  /** An editor extension reporting pastes and copies in the file `file()`. */
  editorExtension (file) {
    return EditorView.domEventHandlers({
      paste: (event, view) => {
        const text = event.clipboardData?.getData('text/plain') ?? ''
        if (text) {
          const offset = view.state.selection.main.from
          this.send({ type: 'paste', length: text.length, hash: hex(digest(new TextEncoder().encode(text))), file: file(), offset })
        }
        return false // CodeMirror still inserts it
      },
      copy: (event, view) => {
        const { from, to } = view.state.selection.main
        if (to > from) this.send({ type: 'copy', length: to - from, file: file() })
        return false
      }
    })
  }

  send (signal) {
    this.pending.push({ ...signal, client_at: Date.now() })
    this._flush()
  }

  _flush () {
    if (!this.session.socket.connected) return
    for (const signal of this.pending.splice(0)) {
      this.session.request('signal', signal).catch(() => {}) // refused: a claim, not data
    }
  }
}
