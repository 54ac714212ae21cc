import { ErrorCode, meshNames } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { generateSecurity, parseProducerFlag, renderTlsConfig, rolePermissions } from './security.js';

describe('meshroute security init (pure parts)', () => {
  it('scopes an agent to its own work, capacity and inbox', () => {
    const p = rolePermissions(meshNames(), { role: 'agent', name: 'edge-1' });
    expect(p.subscribe).toEqual(['meshroute.work.edge-1', '_INBOX_meshroute.agent.edge-1.>']);
    expect(p.publish).toContain('meshroute.capacity.edge-1');
    expect(p.publish.filter((s) => s.startsWith('meshroute.'))).toEqual(['meshroute.capacity.edge-1']);
    expect(p.allowResponses).toBe(true);
  });

  it('scopes a producer to the ingress and outcome subjects of its tenants, under a custom prefix too', () => {
    const p = rolePermissions(meshNames('acme'), { role: 'producer', name: 'web', tenants: ['t1', 't2'] });
    expect(p.publish).toEqual(['acme.ingress.t1', 'acme.outcome.t1', 'acme.ingress.t2', 'acme.outcome.t2']);
    expect(p.subscribe).toEqual(['_INBOX_acme.producer.web.>']);
    expect(p.allowResponses).toBe(false);
  });

  it('lets routers serve the outcome questions of every tenant and answer them', () => {
    const p = rolePermissions(meshNames('acme'), { role: 'router', name: 'r1' });
    expect(p.subscribe).toContain('acme.outcome.*');
    expect(p.allowResponses).toBe(true);
    // Agents and operators neither ask nor answer outcome questions.
    for (const role of ['agent', 'operator'] as const) {
      const other = rolePermissions(meshNames('acme'), { role, name: 'x' });
      expect([...other.publish, ...other.subscribe].filter((s) => s.includes('.outcome.'))).toEqual([]);
    }
  });

  it('rejects bad names, producers without tenants and duplicates, naming the flag', () => {
    expect(() => rolePermissions(meshNames(), { role: 'agent', name: 'a.b' })).toThrow(/--agent: name "a.b"/);
    expect(() => rolePermissions(meshNames(), { role: 'producer', name: 'p' })).toThrow(/--producer: producer p needs/);
    expect(() => rolePermissions(meshNames(), { role: 'producer', name: 'p', tenants: ['x>'] })).toThrow(/tenant "x>"/);
    expect(() =>
      generateSecurity({
        identities: [
          { role: 'agent', name: 'a' },
          { role: 'agent', name: 'a' },
        ],
      }),
    ).toThrow(expect.objectContaining({ code: ErrorCode.CONFIG_ERROR, message: '--agent: a is given twice' }));
    expect(() => parseProducerFlag('web')).toThrow(/expected name=tenant/);
    expect(parseProducerFlag('web=a, b')).toEqual({ role: 'producer', name: 'web', tenants: ['a', 'b'] });
  });

  it('renders nkey users without seeds, and a TLS block for mutual TLS', () => {
    const g = generateSecurity({ identities: [{ role: 'router', name: 'r1' }] });
    const [id] = g.identities;
    expect(id?.seed).toMatch(/^SU/);
    expect(g.authConfig).toContain(`nkey: "${id?.publicKey}"`);
    expect(g.authConfig).not.toContain(id?.seed as string);
    expect(renderTlsConfig({ certFile: '/c.pem', keyFile: '/k.pem', caFile: '/ca.pem', verify: true })).toContain(
      'verify: true',
    );
  });
});
