//! A cell's forward pass as it would be deployed: on CUDA, captured once as one CUDA graph for the
//! cell's fixed shapes and replayed for every loop (one launch instead of ~100 kernel launches
//! from the host); elsewhere, or when asked, or when capture fails, the eager forward. What ran is
//! always said ([`CellForward::execution`]), never a silent fallback.
//!
//! Capture uses candle's own stream and kernels, so the graph computes exactly what the eager
//! path computes (checked after capture: the replayed logits must equal the eager ones). Inputs
//! are copied into the graph's own input buffers before each replay; activations are allocated by
//! the graph's memory nodes, whose addresses are fixed when the graph is instantiated and whose
//! memory the graph keeps between replays (no allocation by the host per loop).

use candle_core::{Device, Result, Tensor};

/// Whether a cell asks for CUDA graphs (`device.cuda_graphs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphMode {
    /// Capture on CUDA; eager on the CPU (where there is nothing to capture).
    Auto,
    /// Always eager (for comparison with the graph).
    Off,
}

/// How one cell's forward pass executes, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// The whole forward (embeddings to logits) replayed as one CUDA graph per loop.
    /// `programmatic_edges`: edges of Programmatic Dependent Launch (a kernel launched with
    /// programmatic stream serialization after another, kept by the capture); None where the
    /// driver could not be asked.
    CudaGraph {
        nodes: usize,
        programmatic_edges: Option<usize>,
    },
    /// Kernel by kernel from the host; `why` says why not a graph (None on the CPU).
    Eager { why: Option<String> },
}

impl Execution {
    /// The record's `implementation.execution` text.
    pub fn describe(&self) -> String {
        match self {
            Execution::CudaGraph {
                nodes,
                programmatic_edges,
            } => format!(
                "cuda-graph: the whole forward captured once per cell ({}), one replay + synchronize per loop",
                graph_size(*nodes, *programmatic_edges)
            ),
            Execution::Eager { why: None } => "eager (kernel by kernel)".to_string(),
            Execution::Eager { why: Some(why) } => format!("eager (kernel by kernel): {why}"),
        }
    }

    pub fn is_graph(&self) -> bool {
        matches!(self, Execution::CudaGraph { .. })
    }
}

/// "N graph nodes", and the programmatic edges where there are any (or the query failed).
fn graph_size(nodes: usize, programmatic_edges: Option<usize>) -> String {
    match programmatic_edges {
        Some(0) => format!("{nodes} graph nodes"),
        Some(p) => format!("{nodes} graph nodes; {p} programmatic edges"),
        None => format!("{nodes} graph nodes; programmatic edges not known (driver query failed)"),
    }
}

/// The work a [`CellForward`] runs: a model's forward pass on the cell's inputs. `ops` knows no
/// model type: the caller hands the pass in as a closure.
pub type Forward<'m> = Box<dyn Fn(&[Tensor]) -> Result<Tensor> + 'm>;

/// One cell's forward pass at one fixed shape of its inputs (e.g. an encoder's ids and mask).
pub struct CellForward<'m> {
    work: Forward<'m>,
    #[cfg(feature = "cuda")]
    graph: Option<cuda::Captured>,
    execution: Execution,
}

impl<'m> CellForward<'m> {
    /// Prepares `work` for inputs shaped like `inputs` (a batch of the cell). On CUDA with
    /// [`GraphMode::Auto`] this warms up, captures and checks the graph (a few forward passes);
    /// if any step fails the cell runs eagerly and [`Self::execution`] says why.
    pub fn new(
        device: &Device,
        inputs: &[Tensor],
        mode: GraphMode,
        work: impl Fn(&[Tensor]) -> Result<Tensor> + 'm,
    ) -> Self {
        let work: Forward<'m> = Box::new(work);
        let eager = |work: Forward<'m>, why: Option<String>| Self {
            work,
            #[cfg(feature = "cuda")]
            graph: None,
            execution: Execution::Eager { why },
        };
        if !device.is_cuda() {
            return eager(work, None);
        }
        match mode {
            GraphMode::Off => return eager(work, Some("device.cuda_graphs = false".into())),
            GraphMode::Auto => {}
        }
        #[cfg(feature = "cuda")]
        {
            match cuda::Captured::capture(device, inputs, &*work) {
                Ok(captured) => Self {
                    work,
                    execution: Execution::CudaGraph {
                        nodes: captured.nodes,
                        programmatic_edges: captured.programmatic_edges,
                    },
                    graph: Some(captured),
                },
                Err(e) => eager(work, Some(format!("CUDA graph capture failed: {e}"))),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = inputs;
            eager(work, Some("this runner was built without CUDA".into()))
        }
    }

    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// The output for this batch. With a graph the returned tensor is the graph's output buffer:
    /// read it (or copy it) before the next call, which overwrites it.
    pub fn forward(&mut self, inputs: &[Tensor]) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(graph) = &self.graph {
            return graph.replay(inputs);
        }
        (self.work)(inputs)
    }
}

/// A fixed piece of work on fixed inputs (a unit called K times, a prefix of the forward pass),
/// executed per loop as a whole pass is: on CUDA with [`GraphMode::Auto`] captured once as one
/// CUDA graph and replayed (one launch per loop), else run eagerly. The per-layer profiler
/// measures these, so that a unit alone runs in the regime it runs in inside the whole pass.
pub struct FixedWork<'w> {
    work: Box<dyn Fn() -> Result<Tensor> + 'w>,
    #[cfg(feature = "cuda")]
    graph: Option<cuda::CapturedWork>,
    execution: Execution,
    what: String,
}

impl<'w> FixedWork<'w> {
    /// `what` names the work in the execution record (e.g. "8 calls of transformer_block_0").
    pub fn new(
        device: &candle_core::Device,
        mode: GraphMode,
        what: &str,
        work: impl Fn() -> Result<Tensor> + 'w,
    ) -> Self {
        Self::stateful(device, mode, what, work, &|| Ok(()))
    }

    /// [`Self::new`] for work that changes state on the device each call (a decode step writes
    /// its KV cache, advances its position and feeds its argmax to the next call): `restore`
    /// puts that state back, and runs before each warm-up call and before the replay that is
    /// checked against the first eager call, and once more at the end.
    pub fn stateful(
        device: &candle_core::Device,
        mode: GraphMode,
        what: &str,
        work: impl Fn() -> Result<Tensor> + 'w,
        restore: &dyn Fn() -> Result<()>,
    ) -> Self {
        let eager = |work: Box<dyn Fn() -> Result<Tensor> + 'w>, why: Option<String>| Self {
            work,
            #[cfg(feature = "cuda")]
            graph: None,
            execution: Execution::Eager { why },
            what: what.to_string(),
        };
        let work: Box<dyn Fn() -> Result<Tensor> + 'w> = Box::new(work);
        if !device.is_cuda() {
            return eager(work, None);
        }
        match mode {
            GraphMode::Off => return eager(work, Some("device.cuda_graphs = false".into())),
            GraphMode::Auto => {}
        }
        #[cfg(feature = "cuda")]
        {
            match cuda::CapturedWork::capture(device, &*work, restore) {
                Ok(graph) => Self {
                    execution: Execution::CudaGraph {
                        nodes: graph.nodes,
                        programmatic_edges: graph.programmatic_edges,
                    },
                    graph: Some(graph),
                    work,
                    what: what.to_string(),
                },
                Err(e) => eager(
                    work,
                    Some(format!("CUDA graph capture of {what} failed: {e}")),
                ),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = restore;
            eager(work, Some("this runner was built without CUDA".into()))
        }
    }

    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// For the record: what one loop runs, and how.
    pub fn describe(&self) -> String {
        self.describe_repeated(1)
    }

    /// [`Self::describe`] for a loop that runs the work `times` times before its one
    /// synchronize (a decode loop: one step per generated token).
    pub fn describe_repeated(&self, times: usize) -> String {
        let (replays, runs) = match times {
            1 => ("one replay + synchronize".to_string(), self.what.clone()),
            n => (
                format!("{n} replays then one synchronize"),
                format!("{}, {n} times,", self.what),
            ),
        };
        match &self.execution {
            Execution::CudaGraph {
                nodes,
                programmatic_edges,
            } => format!(
                "cuda-graph: {} captured once ({}), {replays} per loop",
                self.what,
                graph_size(*nodes, *programmatic_edges)
            ),
            Execution::Eager { why: None } => format!("eager: {runs} per loop"),
            Execution::Eager { why: Some(why) } => format!("eager: {runs} per loop ({why})"),
        }
    }

    /// Runs the work once (asynchronously on CUDA: the caller synchronizes). With a graph the
    /// returned tensor is the graph's output buffer, overwritten by the next call.
    pub fn run(&self) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(graph) = &self.graph {
            return graph.replay();
        }
        (self.work)()
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaGraph, DevicePtr};
    use candle_core::cuda_backend::{CudaStorage, CudaStorageSlice};
    use candle_core::{DType, Result, Storage, Tensor};

    /// A captured forward: its input buffers, its output, and the instantiated graph. Field order
    /// is drop order: the output (graph-owned memory) is freed before the graph is destroyed.
    pub struct Captured {
        output: Tensor,
        inputs: Vec<Tensor>,
        graph: CudaGraph,
        pub nodes: usize,
        pub programmatic_edges: Option<usize>,
    }

    impl Captured {
        pub fn capture(
            device: &candle_core::Device,
            inputs: &[Tensor],
            work: &dyn Fn(&[Tensor]) -> Result<Tensor>,
        ) -> Result<Self> {
            let cuda = device.as_cuda_device()?;
            let stream = cuda.cuda_stream();
            // The graph's own input buffers: each replay reads them, each loop copies into them.
            let statics = inputs
                .iter()
                .map(|t| t.contiguous()?.copy())
                .collect::<Result<Vec<_>>>()?;
            // candle uploads small host data (position ids, kernel shape parameters) as it goes;
            // with this cache on, warm-up uploads them once and capture reuses the device copies
            // (an upload inside a capture would replay a host pointer long freed).
            let _cache = cuda.enable_cuda_graph_htod_cache();
            // Warm-up: loads every kernel module and fills the upload cache.
            let eager = work(&statics)?;
            work(&statics)?;
            device.synchronize()?;
            stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(candle_core::Error::wrap)?;
            let captured = work(&statics);
            // The capture must end whatever happened inside it, or the stream stays capturing.
            let ended = stream.end_capture(
                sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
            );
            let output = captured?;
            let graph = ended
                .map_err(candle_core::Error::wrap)?
                .ok_or_else(|| candle_core::Error::msg("the capture recorded an empty graph"))?;
            let (nodes, programmatic_edges) = (graph_nodes(&graph)?, programmatic_edges(&graph));
            graph.upload().map_err(candle_core::Error::wrap)?;
            let this = Self {
                output,
                inputs: statics,
                graph,
                nodes,
                programmatic_edges,
            };
            // The replay must compute what the eager pass computed: the same kernels in the same
            // order (cuBLAS may pick another algorithm under capture, so not always bit for bit).
            check_replay(&this.replay(inputs)?, &eager)?;
            Ok(this)
        }

        /// Copies the batch into the graph's input buffers and replays it (asynchronously: the
        /// caller synchronizes).
        pub fn replay(&self, inputs: &[Tensor]) -> Result<Tensor> {
            if inputs.len() != self.inputs.len() {
                candle_core::bail!(
                    "{} inputs given to a CUDA graph captured with {}",
                    inputs.len(),
                    self.inputs.len()
                );
            }
            for (dst, src) in self.inputs.iter().zip(inputs) {
                copy_into(dst, src)?;
            }
            self.graph.launch().map_err(candle_core::Error::wrap)?;
            Ok(self.output.clone())
        }
    }

    /// A fixed closure captured as one graph (see [`super::FixedWork`]); field order is drop
    /// order, as in [`Captured`].
    pub struct CapturedWork {
        output: Tensor,
        graph: CudaGraph,
        pub nodes: usize,
        pub programmatic_edges: Option<usize>,
    }

    impl CapturedWork {
        pub fn capture(
            device: &candle_core::Device,
            work: &dyn Fn() -> Result<Tensor>,
            restore: &dyn Fn() -> Result<()>,
        ) -> Result<Self> {
            let cuda = device.as_cuda_device()?;
            let stream = cuda.cuda_stream();
            let _cache = cuda.enable_cuda_graph_htod_cache();
            restore()?;
            // A copy: the eager output may be a buffer the next call overwrites.
            let eager = work()?.copy()?;
            restore()?;
            work()?;
            device.synchronize()?;
            restore()?;
            device.synchronize()?;
            stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(candle_core::Error::wrap)?;
            let captured = work();
            let ended = stream.end_capture(
                sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
            );
            let output = captured?;
            let graph = ended
                .map_err(candle_core::Error::wrap)?
                .ok_or_else(|| candle_core::Error::msg("the capture recorded an empty graph"))?;
            let (nodes, programmatic_edges) = (graph_nodes(&graph)?, programmatic_edges(&graph));
            graph.upload().map_err(candle_core::Error::wrap)?;
            let this = Self {
                output,
                graph,
                nodes,
                programmatic_edges,
            };
            check_replay(&this.replay()?, &eager)?;
            restore()?;
            Ok(this)
        }

        pub fn replay(&self) -> Result<Tensor> {
            self.graph.launch().map_err(candle_core::Error::wrap)?;
            Ok(self.output.clone())
        }
    }

    /// The replay must compute what the eager pass computed (bounds as for the forward's graph).
    fn check_replay(replayed: &Tensor, eager: &Tensor) -> Result<()> {
        let dtype = eager.dtype();
        let replayed = replayed.to_dtype(DType::F32)?;
        let eager = eager.to_dtype(DType::F32)?;
        let scale = eager
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            .max(1.0);
        let difference = (&replayed - &eager)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let bound = match dtype {
            DType::F32 => 1e-4,
            DType::F16 => 1e-2,
            _ => 4e-2,
        } * scale;
        if difference.is_nan() || difference > bound {
            candle_core::bail!(
                "the replayed graph's output differs from the eager run's by up to {difference} (bound {bound})"
            );
        }
        Ok(())
    }

    fn graph_nodes(graph: &CudaGraph) -> Result<usize> {
        let mut count = 0usize;
        // SAFETY: a null node array asks the driver for the count only.
        unsafe {
            sys::cuGraphGetNodes(graph.cu_graph(), std::ptr::null_mut(), &mut count)
                .result()
                .map_err(candle_core::Error::wrap)?;
        }
        Ok(count)
    }

    /// Edges of type programmatic (CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC): what stream capture
    /// made of Programmatic Dependent Launch. None if the driver cannot be asked (before 12.3).
    fn programmatic_edges(graph: &CudaGraph) -> Option<usize> {
        let mut count = 0usize;
        let null = std::ptr::null_mut();
        // SAFETY: null arrays ask for the count; then arrays of that many entries are filled.
        unsafe {
            sys::cuGraphGetEdges_v2(
                graph.cu_graph(),
                null,
                null,
                std::ptr::null_mut(),
                &mut count,
            )
            .result()
            .ok()?;
            let mut from = vec![std::ptr::null_mut(); count];
            let mut to = vec![std::ptr::null_mut(); count];
            let mut data: Vec<sys::CUgraphEdgeData> = vec![std::mem::zeroed(); count];
            sys::cuGraphGetEdges_v2(
                graph.cu_graph(),
                from.as_mut_ptr(),
                to.as_mut_ptr(),
                data.as_mut_ptr(),
                &mut count,
            )
            .result()
            .ok()?;
            let programmatic =
                sys::CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8;
            Some(
                data[..count]
                    .iter()
                    .filter(|e| e.type_ == programmatic)
                    .count(),
            )
        }
    }

    /// Device-to-device copy of `src` into `dst`'s buffer, on candle's stream. Both are
    /// contiguous tensors of one shape and dtype (the cell's batches all have the graph's shape:
    /// anything else is an error, never a silent wrong shape).
    fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
        if dst.shape() != src.shape() || dst.dtype() != src.dtype() {
            candle_core::bail!(
                "a batch of shape {:?} {:?} was given to a CUDA graph captured for {:?} {:?}",
                src.shape(),
                src.dtype(),
                dst.shape(),
                dst.dtype()
            );
        }
        let src = src.contiguous()?;
        let bytes = src.elem_count() * src.dtype().size_in_bytes();
        let (dst_ptr, stream) = raw_ptr(dst)?;
        let (src_ptr, _) = raw_ptr(&src)?;
        // SAFETY: both pointers address `bytes` bytes of live device memory owned by the tensors,
        // which outlive the stream-ordered copy (the caller synchronizes before they can drop).
        unsafe { result::memcpy_dtod_async(dst_ptr, src_ptr, bytes, stream) }
            .map_err(candle_core::Error::wrap)
    }

    /// The device address of a contiguous tensor's first element, and candle's stream.
    fn raw_ptr(t: &Tensor) -> Result<(sys::CUdeviceptr, sys::CUstream)> {
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cuda(storage) = &*storage else {
            candle_core::bail!("not a CUDA tensor");
        };
        let CudaStorage { slice, device } = storage;
        let stream = device.cuda_stream();
        let offset = layout.start_offset() * storage.dtype().size_in_bytes();
        macro_rules! ptr {
            ($($v:ident),*) => {
                match slice {
                    $(CudaStorageSlice::$v(s) => s.device_ptr(&stream).0,)*
                    _ => candle_core::bail!("unexpected dtype {:?} for a graph input", storage.dtype()),
                }
            };
        }
        let base = ptr!(U8, U32, I64, F32, F16, BF16);
        Ok((base + offset as u64, stream.cu_stream()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn on_the_cpu_the_forward_is_eager_and_says_so_without_a_reason() {
        let device = Device::Cpu;
        let a = Tensor::from_vec(vec![1f32, 5., 7., 0., 2., 3.], (2, 3), &device).unwrap();
        let b = Tensor::from_vec(vec![1f32, 1., 0., 2., 1., 1.], (3, 2), &device).unwrap();
        let work = |x: &[Tensor]| x[0].matmul(&x[1])?.relu();
        for mode in [GraphMode::Auto, GraphMode::Off] {
            let inputs = [a.clone(), b.clone()];
            let mut forward = CellForward::new(&device, &inputs, mode, work);
            assert_eq!(forward.execution(), &Execution::Eager { why: None });
            assert_eq!(forward.execution().describe(), "eager (kernel by kernel)");
            let got: Vec<f32> = forward
                .forward(&inputs)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f32> = work(&inputs)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_loop_of_many_steps_says_how_many_run_before_its_synchronize() {
        let work = FixedWork::new(&Device::Cpu, GraphMode::Auto, "one decode step", || {
            Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)
        });
        assert_eq!(work.describe(), "eager: one decode step per loop");
        assert_eq!(
            work.describe_repeated(128),
            "eager: one decode step, 128 times, per loop"
        );
    }

    #[test]
    fn the_record_names_graph_and_eager_execution_with_the_reason() {
        let graph = Execution::CudaGraph {
            nodes: 239,
            programmatic_edges: Some(0),
        };
        assert!(graph.is_graph());
        assert!(graph.describe().starts_with("cuda-graph: "));
        assert!(graph.describe().contains("(239 graph nodes)"));
        // Programmatic Dependent Launch's edges are named where the capture kept any.
        let pdl = Execution::CudaGraph {
            nodes: 151,
            programmatic_edges: Some(96),
        };
        assert!(pdl
            .describe()
            .contains("(151 graph nodes; 96 programmatic edges)"));
        let unknown = Execution::CudaGraph {
            nodes: 151,
            programmatic_edges: None,
        };
        assert!(unknown.describe().contains("programmatic edges not known"));
        let off = Execution::Eager {
            why: Some("device.cuda_graphs = false".into()),
        };
        assert!(!off.is_graph());
        assert_eq!(
            off.describe(),
            "eager (kernel by kernel): device.cuda_graphs = false"
        );
    }
}
