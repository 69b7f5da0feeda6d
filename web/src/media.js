// The call: camera and microphone over WebRTC, signalled through the control plane.
//
// Mesh (the default): this page connects to every other participant's page; whoever joins
// offers to those already there. Relay (a setting, or the fallback when two pages cannot
// connect): the page sends its media to the server only, and the server offers one
// connection per other participant carrying their media ("downlinks"). When the room is
// recorded, the page also sends its media to the server (the "uplink"), which writes it to a
// file as it arrives.

import { h, toast } from './ui.js'

const GATHER_TIMEOUT_MS = 3000

/** Resolve once the connection has gathered its ICE candidates (or after a while). */
function gathered (pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return
      pc.removeEventListener('icegatheringstatechange', done)
      resolve()
    }
    pc.addEventListener('icegatheringstatechange', done)
    setTimeout(resolve, GATHER_TIMEOUT_MS)
  })
}

function deviceProblem (error) {
  if (error.name === 'NotAllowedError') {
    return 'The browser blocked the camera and microphone. Allow them (the icon in the address bar) and join again.'
  }
  if (error.name === 'NotFoundError') return 'No camera or microphone was found on this computer.'
  if (error.name === 'NotReadableError') return 'The camera or microphone is in use by another program.'
  return `Could not start the camera or microphone: ${error.message}`
}

export class Call {
  constructor (el, session, config) {
    this.session = session
    this.me = config.participant
    this.canPublish = config.participant.role === 'interviewer' || config.participant.role === 'candidate'
    this.canRecord = config.participant.role === 'interviewer' && config.room.kind === 'live'
    this.local = null // MediaStream
    this.joined = false
    this.state = { mode: 'mesh', recording: config.room.kind === 'solo' }
    this.iceServers = []
    this.peers = new Map() // other participant id -> RTCPeerConnection
    this.pendingIce = new Map() // other participant id -> candidates before the description
    this.uplink = null
    this.names = new Map()

    this.tiles = h('div', { class: 'tiles' })
    this.indicator = h('span', { id: 'recording', class: 'recording', hidden: true }, '● Recording')
    this.joinButton = h('button', { id: 'call-join', class: 'primary', onclick: () => this.join() }, 'Join call')
    this.leaveButton = h('button', { id: 'call-leave', hidden: true, onclick: () => this.leave() }, 'Leave')
    this.micButton = h('button', { id: 'call-mic', hidden: true, onclick: () => this.toggle('audio') }, 'Mute')
    this.camButton = h('button', { id: 'call-camera', hidden: true, onclick: () => this.toggle('video') }, 'Camera off')
    this.recordButton = this.canRecord
      ? h('button', { id: 'call-record', onclick: () => this.setRecording(!this.state.recording) }, 'Record')
      : null
    this.message = h('p', { id: 'call-message', class: 'call-message', role: 'status', hidden: true })
    const controls = h('div', { class: 'call-controls' }, this.joinButton, this.leaveButton,
      this.micButton, this.camButton, this.recordButton, this.indicator)
    el.replaceChildren(controls, this.message, this.tiles)
    if (!this.canPublish) {
      this.joinButton.hidden = true
      this._say('Only the interviewer and the candidate are in the call.')
    }
    this._showRecording()

    // One message at a time: an answer or a candidate must not overtake the offer before it.
    this.signalling = Promise.resolve()
    session.on('rtc', (m) => {
      this.signalling = this.signalling.then(() => this._onSignal(m))
        .catch((e) => this._say(`Call problem: ${e.message}`))
    })
    // The server drops a connection's place in the call when the connection drops.
    session.on('state', ({ state }) => {
      if (state !== 'connected' && this.joined) {
        this._hangUp()
        this._say('The call dropped with the connection: join again once you are back.')
      }
    })
    session.on('media_peer', (m) => this._onPeer(m))
    session.on('media', (m) => this._onState(m).catch((e) => this._say(`Call problem: ${e.message}`)))
    session.on('media_ended', ({ reason }) => { this._hangUp(); this._say(`You left the call: ${reason}.`) })
  }

  async join () {
    this.joinButton.disabled = true
    try {
      this.local = await navigator.mediaDevices.getUserMedia({
        audio: true, video: { width: 640, height: 480 }
      })
    } catch (error) {
      this._say(deviceProblem(error))
      this.joinButton.disabled = false
      return
    }
    this._tile(this.me.id, `${this.me.name} (you)`, this.local, true)
    try {
      const answer = await this.session.request('media_join', { audio: true, video: true })
      this.joined = true
      this.iceServers = answer.ice_servers
      this.state = { mode: answer.mode, recording: answer.recording }
      this._showRecording()
      this.joinButton.hidden = true
      for (const b of [this.leaveButton, this.micButton, this.camButton]) b.hidden = false
      this._say(null)
      for (const peer of answer.peers) this.names.set(peer.id, peer.name)
      if (this.state.recording || this.state.mode === 'relay') await this._sendUplink()
      if (this.state.mode === 'mesh') {
        for (const peer of answer.peers) await this._offerTo(peer.id)
      }
    } catch (error) {
      this._hangUp()
      this._say(`Could not join the call: ${error.message}`)
    }
  }

  async leave () {
    try { await this.session.request('media_leave', {}) } catch (_) { /* leaving anyway */ }
    this._hangUp()
  }

  async toggle (kind) {
    const tracks = kind === 'audio' ? this.local.getAudioTracks() : this.local.getVideoTracks()
    const on = !tracks.every((t) => t.enabled)
    tracks.forEach((t) => { t.enabled = on })
    this.micButton.textContent = this.local.getAudioTracks().every((t) => t.enabled) ? 'Mute' : 'Unmute'
    this.camButton.textContent = this.local.getVideoTracks().every((t) => t.enabled) ? 'Camera off' : 'Camera on'
    const state = {
      audio: this.local.getAudioTracks().some((t) => t.enabled),
      video: this.local.getVideoTracks().some((t) => t.enabled)
    }
    try { await this.session.request('media_state', state) } catch (error) { toast(error.message, 'error') }
  }

  async setRecording (on) {
    try {
      await this.session.request('media_recording', { on })
    } catch (error) {
      toast(`Recording not ${on ? 'started' : 'stopped'}: ${error.message}`, 'error')
    }
  }

  // -- connections ---------------------------------------------------------------------------

  _connection (other, { send }) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers })
    if (send) this.local.getTracks().forEach((t) => pc.addTrack(t, this.local))
    pc.ontrack = (event) => {
      const stream = event.streams[0] ?? new MediaStream([event.track])
      this._tile(other, this.names.get(other) ?? 'Participant', stream, false)
    }
    pc.onconnectionstatechange = () => {
      if (pc.connectionState !== 'failed' || this.peers.get(other) !== pc) return
      if (this.state.mode === 'mesh') {
        this._say(`Could not connect to ${this.names.get(other) ?? 'a participant'} directly: the server relays the call instead.`)
        this.session.request('media_fallback', {}).catch((e) => this._say(e.message))
      } else {
        this._say(`The connection to ${this.names.get(other) ?? 'a participant'} failed.`)
      }
    }
    return pc
  }

  async _offerTo (other) {
    const pc = this._connection(other, { send: true })
    this.peers.set(other, pc)
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.session.request('rtc', { to: other, kind: 'ice', candidate: candidate.toJSON() }).catch(() => {})
    }
    await pc.setLocalDescription(await pc.createOffer())
    await this.session.request('rtc', { to: other, kind: 'offer', sdp: pc.localDescription.sdp })
  }

  async _sendUplink () {
    this.uplink?.close()
    const pc = new RTCPeerConnection({ iceServers: this.iceServers })
    this.uplink = pc
    this.local.getTracks().forEach((t) => pc.addTransceiver(t, { direction: 'sendonly', streams: [this.local] }))
    await pc.setLocalDescription(await pc.createOffer())
    await gathered(pc) // the server takes the candidates in the description
    const answer = await this.session.request('rtc', { to: 'server', kind: 'offer', sdp: pc.localDescription.sdp })
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp })
  }

  async _onSignal (message) {
    if (!this.joined) return
    const other = message.from
    if (message.kind === 'offer') {
      this.peers.get(other)?.close()
      const viaServer = message.via === 'server'
      const pc = this._connection(other, { send: !viaServer })
      this.peers.set(other, pc)
      if (!viaServer) {
        pc.onicecandidate = ({ candidate }) => {
          if (candidate) this.session.request('rtc', { to: other, kind: 'ice', candidate: candidate.toJSON() }).catch(() => {})
        }
      }
      await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp })
      await this._flushIce(other, pc)
      await pc.setLocalDescription(await pc.createAnswer())
      if (viaServer) {
        await gathered(pc)
        await this.session.request('rtc', { to: 'server', link: other, kind: 'answer', sdp: pc.localDescription.sdp })
      } else {
        await this.session.request('rtc', { to: other, kind: 'answer', sdp: pc.localDescription.sdp })
      }
    } else if (message.kind === 'answer') {
      const pc = this.peers.get(other)
      if (!pc) return
      await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp })
      await this._flushIce(other, pc)
    } else if (message.kind === 'ice' && message.candidate) {
      const pc = this.peers.get(other)
      if (pc?.remoteDescription) await this._addIce(pc, message.candidate)
      else this.pendingIce.set(other, [...(this.pendingIce.get(other) ?? []), message.candidate])
    }
  }

  async _flushIce (other, pc) {
    for (const candidate of this.pendingIce.get(other) ?? []) await this._addIce(pc, candidate)
    this.pendingIce.delete(other)
  }

  async _addIce (pc, candidate) {
    try {
      await pc.addIceCandidate(candidate)
    } catch (error) {
      console.warn('ICE candidate not added', error) // one bad candidate: the others may do
    }
  }

  _onPeer ({ id, name, joined }) {
    this.names.set(id, name)
    if (joined) return // the newcomer offers
    this.peers.get(id)?.close()
    this.peers.delete(id)
    this.pendingIce.delete(id)
    this.tiles.querySelector(`[data-participant="${CSS.escape(id)}"]`)?.remove()
  }

  async _onState (state) {
    const before = this.state
    this.state = state
    this._showRecording()
    if (!this.joined) return
    if (state.mode === 'relay' && before.mode !== 'relay') {
      for (const [id, pc] of this.peers) {
        pc.close()
        this.tiles.querySelector(`[data-participant="${CSS.escape(id)}"]`)?.remove()
      }
      this.peers.clear()
      this.pendingIce.clear()
      await this._sendUplink()
    } else if (state.recording && !this.uplink) {
      await this._sendUplink()
    } else if (!state.recording && state.mode === 'mesh' && this.uplink) {
      this.uplink.close()
      this.uplink = null
    }
  }

  _hangUp () {
    this.joined = false
    for (const pc of this.peers.values()) pc.close()
    this.peers.clear()
    this.pendingIce.clear()
    this.uplink?.close()
    this.uplink = null
    this.local?.getTracks().forEach((t) => t.stop())
    this.local = null
    this.tiles.replaceChildren()
    this.joinButton.hidden = !this.canPublish
    this.joinButton.disabled = false
    for (const b of [this.leaveButton, this.micButton, this.camButton]) b.hidden = true
  }

  // -- display -------------------------------------------------------------------------------

  _tile (id, name, stream, local) {
    let tile = this.tiles.querySelector(`[data-participant="${CSS.escape(id)}"]`)
    if (!tile) {
      const video = h('video', { autoplay: true, playsinline: true })
      video.muted = local // never play your own microphone back
      tile = h('figure', { class: `tile ${local ? 'local' : 'remote'}`, 'data-participant': id },
        video, h('figcaption', {}, name))
      this.tiles.append(tile)
    }
    const video = tile.querySelector('video')
    if (video.srcObject !== stream) video.srcObject = stream
  }

  _showRecording () {
    this.indicator.hidden = !this.state.recording
    if (this.recordButton) this.recordButton.textContent = this.state.recording ? 'Stop recording' : 'Record'
    if (this.state.recording && this.canPublish && !this.joined) {
      this._say('This room is recorded: your camera and microphone are saved when you join the call.')
    }
  }

  _say (text) {
    this.message.hidden = !text
    this.message.textContent = text ?? ''
  }
}
