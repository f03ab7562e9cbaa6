/**
 * Faster replacements of wasm-backend kernels that a profile of a training step showed
 * taking time out of proportion to their work (see `docs/speed.md`):
 *
 * - `Identity` shares the tensor's bytes (a reference count, as the cpu backend does) instead
 *   of copying them: the engine clones every tensor a gradient needs, hundreds per step.
 * - `GatherV2` along the first axis copies whole rows in the heap (embedding rows, rotary
 *   table rows, picked logits).
 * - `Slice` and `SplitV` copy the slice's runs within the heap; tfjs's kernel first copies the
 *   whole input out of the heap, once per slice (a split into n parts copied its input n times).
 *
 * All give bit-identical results; other dtypes and axes go to the original kernels. One kernel
 * is new: {@link rotateHalf} (RoPE's rotate_half), which replaces a product with a ±1
 * permutation matrix by the permutation itself.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

interface WasmTensorData {
  memoryOffset: number;
}
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(id: unknown): WasmTensorData };
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
  incRef(dataId: unknown): void;
}

let identityShared = false;
let gatherRows = false;
let sliceInHeap = false;
let rotateHalfKernel = false;

/** The name under which {@link rotateHalf}'s wasm kernel is registered. */
const ROTATE_HALF = "RecalignRotateHalf";

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };

/**
 * x[begin : begin + size] as copies of contiguous runs inside the wasm heap (any rank). The
 * run is the innermost dims that are taken whole, times the last dim that is not.
 */
function sliceInHeapKernel(
  backend: WasmBackendLike,
  x: tf.TensorInfo,
  begin: number[],
  size: number[],
): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  const n = size.reduce((a, b) => a * b, 1);
  if (n === 0) return out;
  const bytes = BYTES[x.dtype];
  const rank = x.shape.length;

  // Dims from `cut` on form one contiguous run of `run` elements in x.
  let cut = rank - 1;
  while (cut > 0 && size[cut] === x.shape[cut]) cut--;
  let inner = 1;
  for (let i = cut + 1; i < rank; i++) inner *= x.shape[i];
  const run = size[cut] * inner;
  const strides = new Array(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * x.shape[i + 1];
  // Views after makeOutput: allocating can grow (and detach) the wasm memory.
  const heap = backend.wasm.HEAPU8;
  const xo = backend.dataIdMap.get(x.dataId).memoryOffset;
  let oo = backend.dataIdMap.get(out.dataId).memoryOffset;
  const idx = new Array(cut).fill(0); // odometer over dims [0, cut)
  const runBytes = run * bytes;
  for (let copied = 0; copied < n; copied += run) {
    let src = begin[cut] * strides[cut];
    for (let i = 0; i < cut; i++) src += (begin[i] + idx[i]) * strides[i];
    heap.copyWithin(oo, xo + src * bytes, xo + src * bytes + runBytes);
    oo += runBytes;
    for (let i = cut - 1; i >= 0; i--) {
      if (++idx[i] < size[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/**
 * GatherV2 along axis 0 (embedding rows, rotary table rows, picked logits) as row copies in
 * the heap; tfjs's wasm kernel computes strides per element and was ~7 ms for 1,280 rows of 64.
 * Other axes and dtypes go to the original kernel.
 */
function gatherRowsKernel(
  args: Parameters<tf.KernelFunc>[0],
  original: tf.KernelFunc,
): tf.TensorInfo | tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo, indices = args.inputs.indices as tf.TensorInfo;
  const { axis, batchDims } = args.attrs as unknown as { axis: number; batchDims: number };
  const ok = (axis === 0 || axis === -x.shape.length) && !batchDims &&
    (x.dtype === "float32" || x.dtype === "int32") && indices.dtype === "int32" &&
    x.shape.length >= 1;
  if (!ok) return original(args);
  const backend = args.backend as unknown as WasmBackendLike;
  const rows = x.shape[0];
  const rowLen = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const n = indices.shape.reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  if (n === 0 || rowLen === 0) return out;
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer);
  const xo = backend.dataIdMap.get(x.dataId).memoryOffset / 4;
  const io = backend.dataIdMap.get(indices.dataId).memoryOffset / 4;
  const oo = backend.dataIdMap.get(out.dataId).memoryOffset / 4;
  for (let i = 0; i < n; i++) {
    const idx = heap[io + i];
    if (!(idx >= 0 && idx < rows)) {
      throw new Error(`GatherV2: the index value ${idx} is not in [0, ${rows - 1}]`);
    }
    if (rowLen === 1) heap[oo + i] = heap[xo + idx];
    else heap.copyWithin(oo + i * rowLen, xo + idx * rowLen, xo + (idx + 1) * rowLen);
  }
  return out;
}

/**
 * rotate_half along the last axis of a float32 x [..., D] in the heap: cat(−x₂, x₁) with x₁, x₂
 * the two halves, or its transpose cat(x₂, −x₁) (`transpose`, the gradient). Each value is
 * written as 0 − v or 0 + v: exactly what a product with the ±1 permutation matrix gives (the
 * one non-zero term added to +0 sums; −0 comes out as +0), so it replaces that product bit for
 * bit on finite values.
 */
function rotateHalfInHeap(
  backend: WasmBackendLike,
  x: tf.TensorInfo,
  transpose: boolean,
): tf.TensorInfo {
  const out = backend.makeOutput([...x.shape], "float32");
  const d = x.shape[x.shape.length - 1];
  const n = x.shape.reduce((a, b) => a * b, 1);
  if (n === 0) return out;
  const half = d / 2;
  // Views after makeOutput: allocating can grow (and detach) the wasm memory. Views of the
  // tensors' own length: V8 runs the loops over them about twice as fast as over the heap.
  const buf = backend.wasm.HEAPU8.buffer;
  const xs = new Float32Array(buf, backend.dataIdMap.get(x.dataId).memoryOffset, n);
  const os = new Float32Array(buf, backend.dataIdMap.get(out.dataId).memoryOffset, n);
  // cat(−x₂, x₁) writes 0 − x₂ then 0 + x₁; its transpose cat(x₂, −x₁) writes 0 + x₂, 0 − x₁.
  const first = transpose ? 1 : -1;
  for (let row = 0; row < n; row += d) {
    const end = row + half;
    for (let j = row; j < end; j++) os[j] = 0 + first * xs[j + half];
    for (let j = row; j < end; j++) os[j + half] = 0 - first * xs[j];
  }
  return out;
}

/**
 * RoPE's rotate_half of x [..., D] (D even): cat(−x[..., D/2:], x[..., :D/2]), or with
 * `transpose` its transpose cat(x[..., D/2:], −x[..., :D/2]). No gradient of its own (the
 * caller's custom op writes one). Needs {@link rotateHalfAvailable}.
 */
export function rotateHalf(x: tf.Tensor, transpose = false): tf.Tensor {
  return tf.engine().runKernel(
    ROTATE_HALF,
    { x },
    { transpose } as unknown as tf.NamedAttrMap,
  ) as tf.Tensor;
}

/** True when {@link rotateHalf} can run: its kernel is registered and wasm is the backend. */
export function rotateHalfAvailable(): boolean {
  return rotateHalfKernel && tf.getBackend() === "wasm";
}

/**
 * Swap wasm's kernel `name` for `make(original)` (keeping the original's setup). Returns false,
 * changing nothing, when wasm has no such kernel.
 */
function replaceWasmKernel(
  name: string,
  make: (original: tf.KernelConfig) => tf.KernelFunc,
): boolean {
  const original = tf.getKernel(name, "wasm");
  if (!original) return false;
  tf.unregisterKernel(name, "wasm");
  tf.registerKernel({
    kernelName: name,
    backendName: "wasm",
    ...(original.setupFunc ? { setupFunc: original.setupFunc } : {}),
    kernelFunc: make(original),
  });
  return true;
}

/** Register the wasm kernel replacements and {@link rotateHalf}'s kernel (idempotent). */
export function enableFusedKernels(): { identity: boolean; gather: boolean; slice: boolean } {
  if (!rotateHalfKernel && tf.findBackend("wasm")) {
    tf.registerKernel({
      kernelName: ROTATE_HALF,
      backendName: "wasm",
      kernelFunc: (args) => {
        const x = args.inputs.x as tf.TensorInfo;
        const { transpose } = args.attrs as unknown as { transpose: boolean };
        if (x.dtype !== "float32" || x.shape[x.shape.length - 1] % 2 !== 0) {
          throw new Error(`${ROTATE_HALF}: needs float32 with an even last dim, got ${x.dtype}`);
        }
        return rotateHalfInHeap(args.backend as unknown as WasmBackendLike, x, transpose);
      },
    });
    rotateHalfKernel = true;
  }
  if (!identityShared) {
    identityShared = replaceWasmKernel("Identity", (original) => (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (x.dtype === "string") return original.kernelFunc(args);
      (args.backend as unknown as WasmBackendLike).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    });
  }
  if (!gatherRows) {
    gatherRows = replaceWasmKernel(
      "GatherV2",
      (original) => (args) => gatherRowsKernel(args, original.kernelFunc),
    );
  }
  if (!sliceInHeap && tf.getKernel("Slice", "wasm") && tf.getKernel("SplitV", "wasm")) {
    replaceWasmKernel("Slice", (slice) => (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (!(x.dtype in BYTES) || x.shape.length === 0) return slice.kernelFunc(args);
      const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] };
      const [b, sz] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
      return sliceInHeapKernel(args.backend as unknown as WasmBackendLike, x, b, sz);
    });
    replaceWasmKernel("SplitV", (split) => (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      if (!(x.dtype in BYTES) || x.shape.length === 0) return split.kernelFunc(args);
      const { numOrSizeSplits, axis } = args.attrs as unknown as {
        numOrSizeSplits: number | number[];
        axis: number;
      };
      const ax = tf.util.parseAxisParam(axis, x.shape)[0];
      const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
      const begin = new Array(x.shape.length).fill(0);
      return sizes.map((s) => {
        const size = [...x.shape];
        size[ax] = s;
        const part = sliceInHeapKernel(
          args.backend as unknown as WasmBackendLike,
          x,
          [...begin],
          size,
        );
        begin[ax] += s;
        return part;
      });
    });
    sliceInHeap = true;
  }
  return { identity: identityShared, gather: gatherRows, slice: sliceInHeap };
}
