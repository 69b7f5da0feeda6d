// Who is in the room (from the control plane, which knows roles and names from the tokens),
// and which file each person has open (from their editor's awareness).

import { h } from './ui.js'

export class PeopleList {
  constructor (el, awareness, me) {
    this.el = el
    this.awareness = awareness
    this.me = me
    this.people = []
    awareness.on('change', () => this._render())
  }

  set (people) {
    this.people = people
    this._render()
  }

  _render () {
    const files = new Map()
    for (const state of this.awareness.getStates().values()) {
      if (state?.user?.id && state.file) files.set(state.user.id, state.file)
    }
    this.el.replaceChildren(...this.people.map((p) => h('li', {
      'data-participant': p.id, 'data-role': p.role
    },
    h('span', { class: 'dot', style: `background:${p.colour}` }),
    h('span', { class: 'name' }, p.name + (p.id === this.me.id ? ' (you)' : '')),
    h('span', { class: 'role' }, p.role),
    p.media ? h('span', { class: 'in-call', title: 'In the call' },
      `in call${p.media.audio ? '' : ' · muted'}${p.media.video ? '' : ' · camera off'}`) : null,
    files.has(p.id) ? h('span', { class: 'viewing' }, files.get(p.id)) : null)))
  }
}
