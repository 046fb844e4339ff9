import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#2f6fdf', '#d9534f', '#2e9e5b', '#e0a000', '#8a4fd8', '#17a2b8', '#6c757d', '#c2185b'];

// A time chart: `x` in seconds over `range` ([from, to] seconds), `series` [{ label, values }],
// y values written by `format`.
export function Chart({ x, series, title, testid, range, format }) {
  const el = useRef(null);
  useEffect(() => {
    const opts = {
      title,
      width: Math.min(960, el.current.clientWidth || 960),
      height: 280,
      scales: { x: { time: true, range: () => range } },
      axes: [{}, { size: 90, values: (u, vals) => vals.map(format) }],
      series: [
        {},
        ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true, size: 6 } })),
      ],
    };
    const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], el.current);
    return () => plot.destroy();
  }, [x, series, title, range, format]);
  return <div ref={el} class="chart" data-testid={testid} />;
}
