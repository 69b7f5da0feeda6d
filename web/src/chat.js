// Room chat: the history arrives with `welcome`, new lines with `chat`.

import { h, toast } from './ui.js'

export class Chat {
  constructor (el, session, me, canSpeak) {
    this.session = session
    this.me = me
    this.log = h('ol', { id: 'chat-log', 'aria-live': 'polite' })
    this.input = h('input', { id: 'chat-input', maxlength: 2000, autocomplete: 'off',
      placeholder: canSpeak ? 'Message the room' : 'Read-only', 'aria-label': 'Chat message',
      disabled: !canSpeak })
    const form = h('form', { class: 'chat-form', onsubmit: (e) => this._send(e) },
      this.input, h('button', { type: 'submit', disabled: !canSpeak }, 'Send'))
    el.replaceChildren(this.log, form)
  }

  reset (lines) {
    this.log.replaceChildren()
    lines.forEach((line) => this.add(line))
  }

  add ({ author, name, text, at }) {
    const time = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    this.log.append(h('li', { class: author === this.me.id ? 'mine' : '' },
      h('span', { class: 'who' }, name), h('time', {}, time), h('p', {}, text)))
    this.log.scrollTop = this.log.scrollHeight
  }

  async _send (e) {
    e.preventDefault()
    const text = this.input.value.trim()
    if (!text) return
    try {
      await this.session.request('chat', { text })
      this.input.value = ''
    } catch (error) {
      toast(`Message not sent: ${error.message}`, 'error')
    }
  }
}
