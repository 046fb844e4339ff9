import { useApi } from '../lib/hooks.js';
import { age, time, until, version } from '../lib/format.js';
import { EventTable } from './EventTable.jsx';
import { Problem } from './Problem.jsx';

/** The last handshake with `key` as this node's agent reported it: an age, or why there is none. */
function handshakeText(info, key) {
  const seen = (info.wireguard_peers || []).find((p) => p.public_key === key);
  if (!seen) return 'not reported';
  return seen.last_handshake_ms == null ? 'no handshake yet' : age(seen.last_handshake_ms);
}

export function Node({ id }) {
  const { data, error } = useApi(`nodes/${encodeURIComponent(id)}`);
  if (error) return <Problem error={error} />;
  if (!data) return <section><h1>Node {id}</h1><p class="muted">Loading…</p></section>;
  const { posture: p, info } = data;
  return (
    <section data-testid="node-page">
      <h1>Node {info.hostname || info.node_id}</h1>
      <dl class="facts">
        <dt>Id</dt><dd>{info.node_id}</dd>
        <dt>Region</dt><dd>{info.region}</dd>
        <dt>Status</dt><dd><span class={`pill ${p.status}`}>{p.status}</span> {p.reason}</dd>
        <dt>Policy</dt><dd data-testid="node-policy">{data.policy_name || 'none'} {version(p.applied_policy_version)} applied, {version(p.expected_policy_version)} expected</dd>
        <dt>Bundle</dt><dd>{version(p.applied_bundle_version)} applied, {version(p.expected_bundle_version)} current</dd>
        <dt>Workload policies</dt><dd>{data.workload_policies.map(([n, v]) => `${n} v${v}`).join(', ') || 'none'}</dd>
        <dt>Agent</dt><dd>{info.agent_version || '—'}</dd>
        <dt>Certificate</dt><dd>expires {time(info.cert_not_after_ms)} ({until(info.cert_not_after_ms)})</dd>
        <dt>Geo DB</dt><dd>{info.geo_db_version || '—'}</dd>
        <dt>Last seen</dt><dd>{age(info.last_seen_ms)}</dd>
        <dt>Tunnel addresses</dt><dd>{info.tunnel_addresses.join(', ') || '—'}</dd>
      </dl>
      <h2>Workloads</h2>
      {info.workloads && info.workloads.length ? (
        <table data-testid="workloads">
          <thead><tr><th>Cgroup</th><th>Labels</th><th>Policy</th></tr></thead>
          <tbody>
            {info.workloads.map((w) => (
              <tr>
                <td>{w.path}</td>
                <td>{Object.entries(w.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ')}</td>
                <td>{w.policy || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <p class="muted">No workloads reported.</p>}
      <h2>WireGuard peers</h2>
      {data.peers.length ? (
        <table data-testid="peers">
          <thead><tr><th>Peer</th><th>Public key</th><th>Endpoint</th><th>Allowed IPs</th><th>Handshake</th></tr></thead>
          <tbody>
            {data.peers.map((peer) => (
              <tr>
                <td><a href={`#/node/${encodeURIComponent(peer.name)}`}>{peer.name}</a></td>
                <td class="mono">{peer.public_key}</td>
                <td>{peer.endpoint || '—'}</td>
                <td>{peer.allowed_ips.join(', ')}</td>
                <td data-testid="handshake">{handshakeText(info, peer.public_key)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : <p class="muted">No WireGuard peers.</p>}
      <h2>Last events</h2>
      <EventTable events={data.events} testid="node-events" />
    </section>
  );
}
