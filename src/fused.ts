/**
 * Faster replacements of two wasm-backend kernels that a profile of a training step showed
 * taking time out of proportion to their work (see `docs/speed.md`):
 *
 * - `Identity` shares the tensor's bytes (a reference count, as the cpu backend does) instead
 *   of copying them: the engine clones every tensor a gradient needs, hundreds per step.
 * - `GatherV2` along the first axis copies whole rows in the heap (embedding rows, rotary
 *   table rows, picked logits).
 *
 * Both give bit-identical results; other dtypes and axes go to the original kernels.
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

/** Register the wasm kernel replacements (idempotent). */
export function enableFusedKernels(): { identity: boolean; gather: boolean } {
  if (!identityShared) {
    const original = tf.getKernel("Identity", "wasm");
    if (original) {
      tf.unregisterKernel("Identity", "wasm");
      tf.registerKernel({
        kernelName: "Identity",
        backendName: "wasm",
        kernelFunc: (args) => {
          const x = args.inputs.x as tf.TensorInfo;
          if (x.dtype === "string") return original.kernelFunc(args);
          (args.backend as unknown as WasmBackendLike).incRef(x.dataId);
          return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
        },
      });
      identityShared = true;
    }
  }
  if (!gatherRows) {
    const original = tf.getKernel("GatherV2", "wasm");
    if (original) {
      tf.unregisterKernel("GatherV2", "wasm");
      tf.registerKernel({
        kernelName: "GatherV2",
        backendName: "wasm",
        setupFunc: original.setupFunc,
        kernelFunc: (args) => gatherRowsKernel(args, original.kernelFunc),
      });
      gatherRows = true;
    }
  }
  return { identity: identityShared, gather: gatherRows };
}
