// The event dispatcher of the web UI (webui/js/core/dispatch.js), under node's test runner:
// the module has no DOM, and is tested as the browser loads it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Dispatcher, EventOrder, compareIds, typeMatcher } from '../../webui/js/core/dispatch.js';

test('a pattern takes the types the server\'s ?types= would', () => {
  const vm = typeMatcher('vm.*');
  assert.ok(vm('vm.state'));
  assert.ok(vm('vm.clone.disks'), '* crosses dots, as fnmatch does on the server');
  assert.ok(!vm('vms.state'));
  assert.ok(!vm('task.vm.state'), 'anchored at the start');
  assert.ok(typeMatcher('*')('anything.at.all'));
  assert.ok(typeMatcher('task.?tarted')('task.started'));
  assert.ok(!typeMatcher('task.?tarted')('task.restarted'));
  const exact = typeMatcher('vm.state');
  assert.ok(exact('vm.state'));
  assert.ok(!exact('vm.stats'));
  assert.ok(!typeMatcher('vm.stat')('vm.stats'), 'no pattern: the type itself, whole');
  assert.ok(typeMatcher('a+b.(c)')('a+b.(c)'), 'regex characters are themselves');
  assert.throws(() => typeMatcher(''), TypeError);
});

test('each event goes to the handlers whose pattern takes it, in registration order', () => {
  const d = new Dispatcher();
  const seen = [];
  d.on('vm.*', (data, ev) => seen.push(['vms', ev.type, data.name]));
  d.on(['task.finished', 'vm.state'], (data, ev) => seen.push(['two', ev.type]));
  d.on('*', (data, ev) => seen.push(['all', ev.type]));
  assert.equal(d.dispatch({ type: 'vm.state', data: { name: 'a' }, id: '1-0' }), 3);
  assert.equal(d.dispatch({ type: 'task.finished', data: {} }), 2);
  assert.equal(d.dispatch({ type: 'iso.found', data: {} }), 1);
  assert.deepEqual(seen, [
    ['vms', 'vm.state', 'a'], ['two', 'vm.state'], ['all', 'vm.state'],
    ['two', 'task.finished'], ['all', 'task.finished'],
    ['all', 'iso.found'],
  ]);
});

test('an event no module declared reaches no handler; a malformed one is dropped', () => {
  const d = new Dispatcher();
  let called = 0;
  d.on('vm.state', () => { called += 1; });
  assert.equal(d.dispatch({ type: 'host.stats', data: {} }), 0);
  assert.equal(d.dispatch(null), 0);
  assert.equal(d.dispatch({ data: {} }), 0);
  assert.equal(d.dispatch({ type: 7 }), 0);
  assert.equal(called, 0);
});

test('handlers get an object even when the event carries no data', () => {
  const d = new Dispatcher();
  const got = [];
  d.on('service.recovered', (data) => got.push(data));
  d.dispatch({ type: 'service.recovered' });
  d.dispatch({ type: 'service.recovered', data: 'oops' });
  assert.deepEqual(got, [{}, {}]);
});

test('a handler that throws does not keep the event from the others', () => {
  const errors = [];
  const d = new Dispatcher({ onError: (e, ev) => errors.push([e.message, ev.type]) });
  const seen = [];
  d.on('vm.*', () => { throw new Error('boom'); });
  d.on('vm.*', (data) => seen.push(data.name));
  d.dispatch({ type: 'vm.created', data: { name: 'x' } });
  assert.deepEqual(seen, ['x']);
  assert.deepEqual(errors, [['boom', 'vm.created']]);
});

test('a removed handler hears nothing more; the others still do', () => {
  const d = new Dispatcher();
  const seen = [];
  const off = d.on('task.*', (data, ev) => seen.push(`a:${ev.type}`));
  d.on('task.*', (data, ev) => seen.push(`b:${ev.type}`));
  d.dispatch({ type: 'task.created' });
  off();
  off(); // twice is harmless
  d.dispatch({ type: 'task.progress' });
  assert.deepEqual(seen, ['a:task.created', 'b:task.created', 'b:task.progress']);
});

test('a handler registered later hears the types already seen (no stale cache)', () => {
  const d = new Dispatcher();
  d.dispatch({ type: 'iso.found' });
  const seen = [];
  d.on('iso.*', (data, ev) => seen.push(ev.type));
  d.dispatch({ type: 'iso.found' });
  assert.deepEqual(seen, ['iso.found']);
});

test('ids compare as stream ids, numerically', () => {
  assert.ok(compareIds('10-0', '9-5') > 0);
  assert.ok(compareIds('5-10', '5-9') > 0);
  assert.equal(compareIds('7-1', '7-1'), 0);
  assert.ok(compareIds('1700000000000-0', '1700000000001-0') < 0);
});

test('the stream order applies each event once, never one older than the listing', () => {
  const o = new EventOrder();
  o.resetTo('100-0'); // the listing's Events-Cursor
  assert.equal(o.accept({ id: '99-3' }), false, 'older than the listing');
  assert.equal(o.accept({ id: '100-0' }), false, 'the listing has it');
  assert.equal(o.accept({ id: '100-1' }), true);
  assert.equal(o.accept({ id: '100-1' }), false, 'a duplicate after a resume');
  assert.equal(o.accept({ id: '101-0' }), true);
  assert.equal(o.accept({ id: '100-5' }), false, 'out of order: older than the newest applied');
  assert.equal(o.accept({ id: null, type: 'vm.stats' }), true, 'notices always pass');
  assert.equal(o.accept({ type: 'service.degraded' }), true);
  assert.equal(o.lastId, '101-0');
});

test('the stream order remembers a bounded number of ids', () => {
  const o = new EventOrder(3);
  for (let i = 1; i <= 5; i += 1) assert.ok(o.accept({ id: `${i}-0` }));
  assert.equal(o.seen.size, 3);
  o.forget();
  assert.equal(o.lastId, null);
  assert.ok(o.accept({ id: '1-0' }), 'after forgetting (a sign-out), everything is new');
});
