import test from 'node:test';
import assert from 'node:assert/strict';
import { compileCidrs } from '../src/security/cidr.js';
import { clientAddress } from '../src/security/forwarded.js';

const trusted = compileCidrs(['10.0.0.0/8', 'fd00::/8']);

test('an untrusted peer is the client, whatever X-Forwarded-For claims', () => {
  assert.equal(clientAddress('203.0.113.5', '10.0.0.7', trusted), '203.0.113.5');
  assert.equal(clientAddress('203.0.113.5', ['1.2.3.4', '10.0.0.7'], trusted), '203.0.113.5');
  assert.equal(clientAddress('::ffff:203.0.113.5', '10.0.0.7', trusted), '203.0.113.5');
  assert.equal(clientAddress('203.0.113.5', undefined, trusted), '203.0.113.5');
});

test('behind trusted proxies the right-most untrusted address wins, not the forged left-most one', () => {
  assert.equal(
    clientAddress('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2', trusted),
    '198.51.100.7',
  );
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7', trusted), '198.51.100.7');
  assert.equal(clientAddress('::ffff:10.0.0.1', '6.6.6.6,198.51.100.7', trusted), '198.51.100.7');
  // Several header instances are one list, in order.
  assert.equal(
    clientAddress('10.0.0.1', ['6.6.6.6', '198.51.100.7, 10.0.0.2'], trusted),
    '198.51.100.7',
  );
  assert.equal(clientAddress('10.0.0.1', ['198.51.100.7', '10.0.0.2'], trusted), '198.51.100.7');
});

test('a trusted peer without X-Forwarded-For is the client; all-trusted chains yield the left-most hop', () => {
  assert.equal(clientAddress('10.0.0.1', undefined, trusted), '10.0.0.1');
  assert.equal(clientAddress('10.0.0.1', '10.0.0.9, 10.0.0.2', trusted), '10.0.0.9');
});

test('IPv6 hops are normalized (case, brackets, ports, mapped IPv4)', () => {
  assert.equal(clientAddress('fd00::1', '2001:DB8::1, fd00::5', trusted), '2001:db8::1');
  assert.equal(clientAddress('fd00::1', '[2001:db8::1]:443', trusted), '2001:db8::1');
  assert.equal(clientAddress('fd00::1', '[2001:db8::2]', trusted), '2001:db8::2');
  assert.equal(clientAddress('fd00::1', '::ffff:198.51.100.7', trusted), '198.51.100.7');
  assert.equal(
    clientAddress('10.0.0.1', '198.51.100.7:5555, 10.0.0.2:80', trusted),
    '198.51.100.7',
  );
  // A mapped trusted hop is still trusted and skipped.
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7, ::ffff:10.0.0.2', trusted), '198.51.100.7');
});

test('garbage stops the walk at the nearest good hop', () => {
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7, garbage, 10.0.0.2', trusted), '10.0.0.2');
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7, unknown', trusted), '10.0.0.1');
  assert.equal(clientAddress('10.0.0.1', 'garbage', trusted), '10.0.0.1');
  assert.equal(clientAddress('10.0.0.1', '', trusted), '10.0.0.1');
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7,,10.0.0.2', trusted), '10.0.0.2');
  assert.equal(clientAddress('10.0.0.1', '198.51.100.7, 10.0.0.2,', trusted), '10.0.0.1');
  assert.equal(clientAddress('10.0.0.1', '1.2.3.4.5, 10.0.0.2', trusted), '10.0.0.2');
  assert.equal(clientAddress('10.0.0.1', '0x7f.1, 10.0.0.2', trusted), '10.0.0.2');
});

test('a peer that is not an address yields no address, not a forwarded one', () => {
  assert.equal(clientAddress('', '198.51.100.7', trusted), '');
  assert.equal(clientAddress('not-an-ip', '198.51.100.7', trusted), '');
});
