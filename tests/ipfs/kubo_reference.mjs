// Copyright (c) Dihya ops maintainers
// GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The CIDs Kubo's `ipfs add --cid-version=1 [-w] -r` gives, computed by the npm ipfs-unixfs-importer
// configured with Kubo's parameters: CIDv1, raw leaves, fixed 262,144-byte chunks, balanced layout of at
// most 174 links per node, a single chunk reduced to its raw leaf, no mode or mtime.
//
//   node kubo_reference.mjs wrap|nowrap PATH...
//
// prints one JSON object: {"root": CID, "entries": {"relative/path": CID, ...}}.
import fs from 'node:fs'
import path from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'

const [mode, ...inputs] = process.argv.slice(2)
if (!['wrap', 'nowrap'].includes(mode) || inputs.length === 0) {
  console.error('usage: node kubo_reference.mjs wrap|nowrap PATH...')
  process.exit(2)
}

function * walk (full, rel) {
  const info = fs.lstatSync(full)
  if (info.isDirectory()) {
    yield { path: rel }
    for (const name of fs.readdirSync(full).sort()) {
      yield * walk(path.join(full, name), rel + '/' + name)
    }
  } else if (info.isFile()) {
    yield { path: rel, content: fs.createReadStream(full) }
  } else {
    throw new Error(`${full} is neither a file nor a directory`)
  }
}

const source = inputs.flatMap((input) => [...walk(input, path.basename(input))])
const entries = {}
let root = null
for await (const entry of importer(source, new MemoryBlockstore(), {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  wrapWithDirectory: mode === 'wrap',
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 })
})) {
  entries[entry.path] = entry.cid.toString()
  root = entry.cid.toString()
}
console.log(JSON.stringify({ root, entries }))
