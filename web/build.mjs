// Bundles the room page into dist/ (room.js, room.css and their source maps).
// Everything comes from node_modules: the page needs no CDN and works offline.
import * as esbuild from 'esbuild'

await esbuild.build({
  entryPoints: { room: 'src/room.js', replay: 'src/replay.js' },
  bundle: true,
  format: 'esm',
  minify: true,
  sourcemap: true,
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: 'dist',
  logLevel: 'warning'
})
