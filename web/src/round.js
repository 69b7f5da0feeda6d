// The round: its state and clock in the header, and the controls each role has
// (the interviewer starts and ends a live round; a candidate submits a solo test).

import { h, clock, toast } from './ui.js'

const LABELS = { scheduled: 'Not started', open: 'Not started', live: 'Live', ended: 'Ended' }
const ENDED_BY = {
  interviewer: 'by the interviewer',
  candidate: 'submitted by the candidate',
  deadline: 'time is up'
}

export class RoundBar {
  constructor (el, session, { role, kind }, onChange) {
    this.session = session
    this.onChange = onChange
    this.round = { state: 'scheduled' }
    this.label = h('span', { id: 'round-state' })
    this.timer = h('span', { id: 'round-clock' })
    this.controls = []
    if (role === 'interviewer' && kind === 'live') {
      this.startButton = h('button', { id: 'round-start', onclick: () => this._act('start') }, 'Start round')
      this.endButton = h('button', { id: 'round-end', class: 'danger', onclick: () => this._confirmEnd() }, 'End round')
      this.controls.push(this.startButton, this.endButton)
    }
    if (role === 'candidate' && kind === 'solo') {
      this.submitButton = h('button', { id: 'round-submit', onclick: () => this._confirmSubmit() }, 'Submit')
      this.controls.push(this.submitButton)
    }
    el.replaceChildren(this.label, this.timer, ...this.controls)
    setInterval(() => this._tick(), 1000)
  }

  set (round) {
    this.round = round
    this.label.textContent = LABELS[round.state] ?? round.state
    this.label.dataset.state = round.state
    if (this.startButton) this.startButton.hidden = round.state === 'live' || round.state === 'ended'
    if (this.endButton) this.endButton.hidden = round.state !== 'live'
    if (this.submitButton) this.submitButton.hidden = round.state !== 'live'
    this._tick()
    this.onChange(round)
  }

  _tick () {
    const { state, deadline, started_at: startedAt, ended_reason: reason } = this.round
    if (state === 'live' && deadline) this.timer.textContent = `${clock(deadline - Date.now())} left`
    else if (state === 'live' && startedAt) this.timer.textContent = clock(Date.now() - startedAt)
    else if (state === 'ended' && reason) this.timer.textContent = ENDED_BY[reason] ?? reason
    else this.timer.textContent = ''
  }

  _confirmEnd () {
    if (window.confirm('End the round? The candidate\'s editor becomes read-only.')) this._act('end')
  }

  _confirmSubmit () {
    if (window.confirm('Submit your work? You will not be able to change it afterwards.')) this._act('submit')
  }

  async _act (action) {
    try {
      await this.session.request('round', { action })
    } catch (error) {
      toast(`Could not ${action} the round: ${error.message}`, 'error')
    }
  }
}
