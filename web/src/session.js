// The page's two connections to the server, and what the page shows about them.
//
// * The room document over y-websocket (`/rooms/{id}/doc`): files, metadata, run outputs.
//   Yjs keeps every local edit while the socket is down and sends what the server lacks when
//   it comes back, so nothing typed offline is lost.
// * The control plane over Socket.IO: presence, chat, the round, runs.
//
// Close codes 44xx from the server are final (an expired link, a room that is gone): the
// provider stops reconnecting and the page says why. 4429 (slow down) is retried.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { io } from 'socket.io-client'
import { ObservableV2 } from 'lib0/observable'

const RETRIED_CLOSE_CODES = new Set([4429])
const REQUEST_TIMEOUT_MS = 15000

/** Where this page's server is, for WebSockets: the page's own origin, so proxies just work. */
function wsBase () {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/rooms`
}

/** Open one of a room's documents ("doc" or "notes") over y-websocket. */
export function openDocument (roomId, which, token) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(wsBase(), `${roomId}/${which}`, doc, {
    params: { token },
    disableBc: true, // two tabs of one person are two participants' worth of cursors
    maxBackoffTime: 2000,
    shouldReconnect: (event) => !(event.code >= 4400 && event.code < 4500) ||
      RETRIED_CLOSE_CODES.has(event.code)
  })
  return { doc, provider }
}

/**
 * The live session of this page: the room document, its awareness and the control socket.
 *
 * Events: `state` ({ state: 'connecting' | 'connected' | 'reconnecting', detail }),
 * `closed` ({ code, reason }) when the server ends this page's session for good, and every
 * control-plane event the server sends (`welcome`, `presence`, `chat`, `round`, ...).
 */
export class RoomSession extends ObservableV2 {
  constructor (config, token) {
    super()
    this.config = config
    this.token = token
    const { doc, provider } = openDocument(config.room.id, 'doc', token)
    this.doc = doc
    this.provider = provider
    this.awareness = provider.awareness
    this.docConnected = false
    this.everSynced = false
    this.socket = io({
      auth: { token },
      transports: ['websocket'],
      reconnectionDelayMax: 2000
    })
    this.controlConnected = false
    this.state = 'connecting'

    provider.on('status', ({ status }) => {
      this.docConnected = status === 'connected'
      this._update()
    })
    provider.on('sync', (synced) => {
      if (synced) this.everSynced = true
      this._update()
    })
    provider.on('closed', ({ code, reason }) => this._close(code, reason))

    const socket = this.socket
    socket.on('connect', () => { this.controlConnected = true; this._update() })
    socket.on('disconnect', (reason) => {
      this.controlConnected = false
      // Socket.IO never reconnects after the server hung up (a deleted room, a flood of
      // refused events): say so instead of showing "reconnecting" forever.
      if (reason === 'io server disconnect') this._close(4400, 'the server closed this page\'s connection')
      else this._update()
    })
    socket.on('connect_error', (error) => {
      // A refusal by the server (bad or expired token) leaves the socket inactive; anything
      // else is the network, and Socket.IO keeps trying.
      if (!socket.active) this._close(4401, error.message)
    })
    for (const event of ['welcome', 'presence', 'chat', 'round', 'round_warning',
      'input_request', 'error', 'rtc', 'media_peer', 'media', 'media_ended']) {
      socket.on(event, (payload) => this.emit(event, [payload]))
    }
  }

  /** Send a control event; resolves with the server's answer, rejects with its reason. */
  request (event, payload) {
    return new Promise((resolve, reject) => {
      if (!this.socket.connected) {
        reject(new Error('not connected to the room: try again in a moment'))
        return
      }
      this.socket.timeout(REQUEST_TIMEOUT_MS).emit(event, payload, (err, answer) => {
        if (err) reject(new Error('the server did not answer in time'))
        else if (!answer || answer.ok !== true) reject(new Error(answer?.reason ?? 'refused'))
        else resolve(answer)
      })
    })
  }

  _update () {
    if (this.state === 'closed') return
    const connected = this.docConnected && this.provider.synced && this.controlConnected
    const state = connected ? 'connected' : (this.everSynced ? 'reconnecting' : 'connecting')
    if (state !== this.state) {
      this.state = state
      this.emit('state', [{ state }])
    }
  }

  _close (code, reason) {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.provider.disconnect()
    this.socket.disconnect()
    this.emit('closed', [{ code, reason }])
  }
}
