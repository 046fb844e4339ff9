import { useState } from 'preact/hooks';
import { useApi } from '../lib/hooks.js';
import { post, query } from '../lib/api.js';
import { EventTable } from './EventTable.jsx';
import { Problem } from './Problem.jsx';

const FIELDS = ['kind', 'region', 'node', 'workload'];

export function Alerts({ user }) {
  const [filter, setFilter] = useState({ kind: '', region: '', node: '', workload: '' });
  const [before, setBefore] = useState([]);
  const [problem, setProblem] = useState(null);
  const cursor = before[before.length - 1];
  const { data, error, reload } = useApi(`alerts${query({ ...filter, ...cursor, limit: 100 })}`);
  const submit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    setFilter(Object.fromEntries(FIELDS.map((k) => [k, (f.get(k) || '').trim()])));
    setBefore([]);
  };
  const ack = async (event) => {
    try {
      await post('alerts/ack', { node_id: event.node_id, id: event.id });
      reload();
    } catch (err) {
      setProblem(err);
    }
  };
  return (
    <section>
      <h1>Alerts</h1>
      <form class="inline" onSubmit={submit} data-testid="alert-filter">
        {FIELDS.map((k) => (
          <label>{k} <input name={k} value={filter[k]} size="14" /></label>
        ))}
        <button type="submit">Filter</button>
      </form>
      {problem && <Problem error={problem} />}
      {error && <Problem error={error} />}
      {!data && !error && <p class="muted">Loading…</p>}
      {data && <EventTable events={data} onAck={user.role === 'viewer' ? null : ack} testid="alerts" />}
      <p class="pager">
        <button disabled={!before.length} onClick={() => setBefore(before.slice(0, -1))}>Newer</button>{' '}
        <button disabled={!data || data.length < 100} onClick={() => {
          const last = data[data.length - 1];
          setBefore([...before, { after_ms: last.received_ms, after_node: last.node_id, after_id: last.id }]);
        }}>Older</button>
      </p>
    </section>
  );
}
