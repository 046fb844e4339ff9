import { useMemo, useState } from 'preact/hooks';
import { useApi } from '../lib/hooks.js';
import { bytes } from '../lib/format.js';
import { Chart } from './Chart.jsx';
import { Problem } from './Problem.jsx';

// One x axis (every bucket any series has), each series' value per bucket (0 where absent).
function align(series, pick) {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  return {
    x: xs.map((t) => t / 1000),
    series: series.map((s) => {
      const m = new Map(s.points.map((p) => [p[0], pick(p)]));
      return { label: `${s.region || '?'} → ${s.country}`, values: xs.map((t) => m.get(t) || 0) };
    }),
  };
}

export function Flows() {
  const [hours, setHours] = useState(24);
  const { data, error } = useApi(`flows?hours=${hours}`);
  const byBytes = useMemo(() => data && align(data.series, (p) => p[1]), [data]);
  const byEvents = useMemo(() => data && align(data.series, (p) => p[2]), [data]);
  const range = useMemo(() => data && [data.since_ms / 1000, Date.now() / 1000], [data]);
  return (
    <section>
      <h1>Flows</h1>
      <p class="muted">
        Destinations the agents reported (exfiltration alerts carry bytes; denials, plaintext drops and
        other events carry counts), by node region and destination country, per hour. Agents do not
        upload their per-flow counters: see <code>ringfence-agent flows</code> on a node for those.
      </p>
      <label>
        Last{' '}
        <select value={hours} onChange={(e) => setHours(Number(e.target.value))}>
          {[1, 6, 24, 72, 168].map((h) => <option value={h}>{h} h</option>)}
        </select>
      </label>
      {error && <Problem error={error} />}
      {!data && !error && <p class="muted">Loading…</p>}
      {data && (
        <>
          <p class="muted">{data.events_read} events read.</p>
          {data.series.length ? (
            <>
              <Chart title="Bytes by region → country" testid="chart-bytes" range={range} format={bytes} {...byBytes} />
              <Chart title="Events by region → country" testid="chart-events" range={range} format={String} {...byEvents} />
            </>
          ) : <p class="muted">No events in this period.</p>}
          <h2>Top destinations</h2>
          <table data-testid="top-destinations">
            <thead><tr><th>Region</th><th>Destination</th><th>Country</th><th>Bytes</th><th>Events</th></tr></thead>
            <tbody>
              {data.top.map((t) => (
                <tr><td>{t.region || '—'}</td><td>{t.destination}</td><td>{t.country}</td><td>{bytes(t.bytes)}</td><td>{t.events}</td></tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
