// Bundles the pages into dist/: the room, its replay and a pipeline's candidate list (each a
// .js and .css with source maps).
// Everything comes from node_modules: the page needs no CDN and works offline.
import * as esbuild from 'esbuild'

await esbuild.build({
  entryPoints: { room: 'src/room.js', replay: 'src/replay.js', pipeline: 'src/pipeline.js' },
  bundle: true,
  format: 'esm',
  minify: true,
  sourcemap: true,
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: 'dist',
  logLevel: 'warning'
})
