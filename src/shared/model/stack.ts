/**
 * The layer stack's shape, shared by the host (which builds it from headers, src/model/stack.ts) and the
 * layer-stack page (which draws it): types only, so the page pulls in none of the readers.
 */
export interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
  params: number;
  bytes: number;
}

export interface ParamGroup {
  params: number;
  bytes: number;
  tensors: TensorSummary[];
}

export interface LayerGroup extends ParamGroup {
  index: number;
}

/** A model's layer stack as read from headers alone: the one shape every view, plan and the CLI use. */
export interface LayerStack {
  source: 'safetensors' | 'onnx';
  path: string;
  name: string;
  family: string;
  numLayers: number;
  hiddenSize?: number;
  numHeads?: number;
  numKeyValueHeads?: number;
  vocabSize?: number;
  tieWordEmbeddings?: boolean;
  totalParams: number;
  totalBytes: number;
  embeddingParams: number;
  headParams: number;
  finalNormParams: number;
  otherParams: number;
  embedding: ParamGroup;
  finalNorm: ParamGroup;
  head: ParamGroup;
  other: ParamGroup;
  layers: LayerGroup[];
  files: string[];
  /** ONNX graphs only: their inputs and outputs. */
  io?: { inputs: IoInfo[]; outputs: IoInfo[] };
  warnings: string[];
}

export interface IoInfo {
  name: string;
  dtype: string;
  shape: Array<number | string>;
}
