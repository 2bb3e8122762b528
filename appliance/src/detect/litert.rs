//! The LiteRT 2.x backend: `libLiteRt.so` loaded at run time, driven
//! through its C API (environment, model, compiled model, tensor buffers).
//!
//! The declarations below follow LiteRT 2.1's C headers
//! (`litert_environment.h`, `litert_model.h`, `litert_compiled_model.h`,
//! `litert_tensor_buffer.h`, `litert_options.h`, `litert_opaque_options.h`).
//! From 2.2 on `LiteRtCreateModelFromFile` takes the environment first, so
//! the runtime is pinned to 2.1.x (see models/runtimes.toml).
//!
//! Models with dynamic output shapes (the SSD post-processing op's outputs
//! are empty in the file) get their output layouts from the compiled model
//! before any output buffer is made.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::ptr;

use libloading::Library;

use super::{
    check_elf_arch, Accelerator, Backend, DetectError, DetectSettings, DetectorStatus, ElementType,
    Engine, TensorInfo,
};

type Status = c_int;
type Handle = *mut c_void;

const MAX_RANK: usize = 8;
const HW_CPU: c_int = 1;
const HW_GPU: c_int = 1 << 1;
const HW_NPU: c_int = 1 << 2;
const LOCK_READ: c_int = 0;
const LOCK_WRITE: c_int = 1;
const ENV_DISPATCH_LIBRARY_DIR: c_int = 1;
const ANY_STRING: c_int = 8;

/// `LiteRtLayout`: `rank` (7 bits) and `has_strides` (1 bit) share the
/// first 32-bit unit, then dimensions and strides.
#[repr(C)]
#[derive(Clone, Copy)]
struct Layout {
    bits: u32,
    dims: [i32; MAX_RANK],
    strides: [u32; MAX_RANK],
}

impl Layout {
    const EMPTY: Layout = Layout {
        bits: 0,
        dims: [0; MAX_RANK],
        strides: [0; MAX_RANK],
    };

    fn dims(&self) -> Vec<i32> {
        let rank = ((self.bits & 0x7f) as usize).min(MAX_RANK);
        self.dims[..rank].to_vec()
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RankedTensorType {
    element_type: c_int,
    layout: Layout,
}

/// `LiteRtAny`: a type tag and an 8-byte union (integer or pointer).
#[repr(C)]
struct Any {
    kind: c_int,
    value: u64,
}

#[repr(C)]
struct EnvOption {
    tag: c_int,
    value: Any,
}

const _: () = assert!(std::mem::size_of::<Layout>() == 68);
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);
const _: () = assert!(std::mem::size_of::<EnvOption>() == 24);

runtime_api! {
    "a LiteRT 2.1 library";
    LiteRtCreateEnvironment: fn(c_int, *const EnvOption, *mut Handle) -> Status;
    LiteRtDestroyEnvironment: fn(Handle);
    LiteRtCreateModelFromBuffer: fn(*const c_void, usize, *mut Handle) -> Status;
    LiteRtDestroyModel: fn(Handle);
    LiteRtGetNumModelSignatures: fn(Handle, *mut usize) -> Status;
    LiteRtGetModelSignature: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetNumSignatureInputs: fn(Handle, *mut usize) -> Status;
    LiteRtGetNumSignatureOutputs: fn(Handle, *mut usize) -> Status;
    LiteRtGetSignatureInputTensorByIndex: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetSignatureOutputTensorByIndex: fn(Handle, usize, *mut Handle) -> Status;
    LiteRtGetTensorName: fn(Handle, *mut *const c_char) -> Status;
    LiteRtGetRankedTensorType: fn(Handle, *mut RankedTensorType) -> Status;
    LiteRtCreateOptions: fn(*mut Handle) -> Status;
    LiteRtDestroyOptions: fn(Handle);
    LiteRtSetOptionsHardwareAccelerators: fn(Handle, c_int) -> Status;
    LiteRtCreateOpaqueOptions: fn(*const c_char, *mut c_void, Option<unsafe extern "C" fn(*mut c_void)>, *mut Handle) -> Status;
    LiteRtDestroyOpaqueOptions: fn(Handle);
    LiteRtAddOpaqueOptions: fn(Handle, Handle) -> Status;
    LiteRtCreateCompiledModel: fn(Handle, Handle, Handle, *mut Handle) -> Status;
    LiteRtDestroyCompiledModel: fn(Handle);
    LiteRtGetCompiledModelInputBufferRequirements: fn(Handle, usize, usize, *mut Handle) -> Status;
    LiteRtGetCompiledModelOutputBufferRequirements: fn(Handle, usize, usize, *mut Handle) -> Status;
    LiteRtGetCompiledModelOutputTensorLayouts: fn(Handle, usize, usize, *mut Layout, bool) -> Status;
    LiteRtCreateManagedTensorBufferFromRequirements: fn(Handle, *const RankedTensorType, Handle, *mut Handle) -> Status;
    LiteRtGetTensorBufferRequirementsBufferSize: fn(Handle, *mut usize) -> Status;
    LiteRtDestroyTensorBuffer: fn(Handle);
    LiteRtGetTensorBufferSize: fn(Handle, *mut usize) -> Status;
    LiteRtLockTensorBuffer: fn(Handle, *mut *mut c_void, c_int) -> Status;
    LiteRtUnlockTensorBuffer: fn(Handle) -> Status;
    LiteRtRunCompiledModel: fn(Handle, usize, usize, *mut Handle, usize, *mut Handle) -> Status;
}

/// LiteRT status codes (`litert_common.h`), named for error messages.
fn status_name(status: Status) -> &'static str {
    match status {
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        7 => "timeout",
        8 => "wrong version",
        9 => "unknown error",
        10 => "already exists",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        502 => "dynamic loading error",
        503 => "serialisation error",
        504 => "compilation error",
        1000 => "index out of bounds",
        _ => "error",
    }
}

fn check(status: Status, what: &str) -> Result<(), String> {
    if status == 0 {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: LiteRT status {status} ({})",
            status_name(status)
        ))
    }
}

/// The XNNPACK options payload: a C string the runtime frees through this.
unsafe extern "C" fn free_c_string(payload: *mut c_void) {
    if !payload.is_null() {
        // SAFETY: made by CString::into_raw in `cpu_options`.
        drop(unsafe { CString::from_raw(payload.cast()) });
    }
}

/// A model file's bytes, 64-byte aligned (weights are read in place).
struct ModelBytes {
    blocks: Vec<Block>,
    len: usize,
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block([u8; 64]);

impl ModelBytes {
    fn read(path: &Path) -> Result<ModelBytes, DetectError> {
        use std::io::Read;
        let io = |source| DetectError::Io {
            path: path.to_owned(),
            what: "cannot read the model",
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        let mut blocks = vec![Block([0; 64]); len.div_ceil(64)];
        // SAFETY: Block is 64 plain bytes, so the blocks are len (rounded
        // up) initialised bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), len) };
        file.read_exact(bytes).map_err(io)?;
        Ok(ModelBytes { blocks, len })
    }
}

/// A compiled model with its buffers, ready to run.
pub struct LiteRtEngine {
    api: Api,
    env: Handle,
    model: Handle,
    /// The model's bytes, which LiteRT uses in place: kept until after the
    /// model is destroyed (fields drop after `Drop::drop`).
    model_bytes: Option<ModelBytes>,
    options: Handle,
    compiled: Handle,
    input_buffer: Handle,
    input_len: usize,
    output_buffers: Vec<Handle>,
    /// Floats in each output buffer, from the compiled layouts.
    output_lens: Vec<usize>,
    input: TensorInfo,
    outputs: Vec<TensorInfo>,
    status: DetectorStatus,
}

// SAFETY: the handles are only used through `&mut self`, from one thread at
// a time; LiteRT objects are not tied to the thread that made them.
unsafe impl Send for LiteRtEngine {}

impl LiteRtEngine {
    /// Loads the runtime and compiles the model at `model_path` for the
    /// configured accelerator, falling back to CPU when it cannot be used.
    pub fn open(model_path: &Path, settings: &DetectSettings) -> Result<Self, DetectError> {
        let api = Api::load(&settings.runtime)?;
        let mut engine = LiteRtEngine {
            api,
            env: ptr::null_mut(),
            model: ptr::null_mut(),
            model_bytes: None,
            options: ptr::null_mut(),
            compiled: ptr::null_mut(),
            input_buffer: ptr::null_mut(),
            input_len: 0,
            output_buffers: Vec::new(),
            output_lens: Vec::new(),
            input: TensorInfo {
                name: String::new(),
                element: ElementType::Other(0),
                dims: Vec::new(),
            },
            outputs: Vec::new(),
            status: DetectorStatus {
                backend: Backend::Litert,
                runtime: settings.runtime.clone(),
                model: String::new(),
                requested: settings.accelerator,
                accelerator: settings.accelerator,
                fallback: None,
                threads: settings.threads,
            },
        };
        let runtime_err = |reason: String| DetectError::Runtime {
            path: settings.runtime.clone(),
            reason,
        };
        engine.create_environment(settings).map_err(runtime_err)?;
        engine.load_model(model_path)?;
        engine.compile(settings).map_err(runtime_err)?;
        engine
            .make_buffers()
            .map_err(|reason| DetectError::BadModel {
                path: model_path.to_owned(),
                reason,
            })?;
        Ok(engine)
    }

    fn create_environment(&mut self, settings: &DetectSettings) -> Result<(), String> {
        let dispatch = match (&settings.accelerator, &settings.npu_dispatch_dir) {
            (Accelerator::Npu, Some(dir)) => Some(
                CString::new(dir.as_os_str().as_encoded_bytes())
                    .map_err(|_| "the NPU dispatch folder contains a NUL byte".to_string())?,
            ),
            _ => None,
        };
        let options: Vec<EnvOption> = dispatch
            .iter()
            .map(|dir| EnvOption {
                tag: ENV_DISPATCH_LIBRARY_DIR,
                value: Any {
                    kind: ANY_STRING,
                    value: dir.as_ptr() as u64,
                },
            })
            .collect();
        // SAFETY: options and the strings they point at outlive the call
        // (the environment copies them).
        check(
            unsafe {
                (self.api.LiteRtCreateEnvironment)(
                    options.len() as c_int,
                    options.as_ptr(),
                    &mut self.env,
                )
            },
            "creating the LiteRT environment",
        )
    }

    fn load_model(&mut self, path: &Path) -> Result<(), DetectError> {
        let bad = |reason: String| DetectError::BadModel {
            path: path.to_owned(),
            reason,
        };
        sniff_tflite(path)?;
        // From memory rather than from the file: LiteRT 2.1 verifies the
        // flatbuffer of a buffer and refuses a bad one, but parses a file
        // it failed to verify and crashes on a truncated one.
        let bytes = self.model_bytes.insert(ModelBytes::read(path)?);
        // SAFETY: the bytes stay alive and unmoved (heap blocks) as long as
        // the model; model receives a new handle.
        let status = unsafe {
            (self.api.LiteRtCreateModelFromBuffer)(
                bytes.blocks.as_ptr().cast(),
                bytes.len,
                &mut self.model,
            )
        };
        check(status, "loading the model").map_err(&bad)?;
        let api = &self.api;
        let mut count = 0usize;
        check(
            // SAFETY: the model handle is valid; out-pointers are ours.
            unsafe { (api.LiteRtGetNumModelSignatures)(self.model, &mut count) },
            "reading signatures",
        )
        .map_err(&bad)?;
        if count == 0 {
            return Err(bad("has no signature (no subgraph?)".into()));
        }
        let mut signature = ptr::null_mut();
        let (mut inputs, mut outputs) = (0usize, 0usize);
        // SAFETY: as above.
        unsafe {
            check(
                (api.LiteRtGetModelSignature)(self.model, 0, &mut signature),
                "reading signature 0",
            )
            .map_err(&bad)?;
            check(
                (api.LiteRtGetNumSignatureInputs)(signature, &mut inputs),
                "counting inputs",
            )
            .map_err(&bad)?;
            check(
                (api.LiteRtGetNumSignatureOutputs)(signature, &mut outputs),
                "counting outputs",
            )
            .map_err(&bad)?;
        }
        if inputs != 1 {
            return Err(DetectError::BadModel {
                path: path.to_owned(),
                reason: format!("has {inputs} inputs, a detector takes one image"),
            });
        }
        let describe = |tensor: Handle| -> Result<TensorInfo, String> {
            let mut name: *const c_char = ptr::null();
            let mut ranked = RankedTensorType {
                element_type: 0,
                layout: Layout::EMPTY,
            };
            // SAFETY: tensor comes from the signature; out-pointers are ours;
            // the name lives as long as the model.
            unsafe {
                check(
                    (api.LiteRtGetTensorName)(tensor, &mut name),
                    "reading a tensor name",
                )?;
                check(
                    (api.LiteRtGetRankedTensorType)(tensor, &mut ranked),
                    "reading a tensor type",
                )?;
                Ok(TensorInfo {
                    name: if name.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(name).to_string_lossy().into_owned()
                    },
                    element: ElementType::from_code(ranked.element_type),
                    dims: ranked.layout.dims(),
                })
            }
        };
        let mut tensor = ptr::null_mut();
        check(
            // SAFETY: index 0 < inputs.
            unsafe { (api.LiteRtGetSignatureInputTensorByIndex)(signature, 0, &mut tensor) },
            "reading the input tensor",
        )
        .map_err(&bad)?;
        self.input = describe(tensor).map_err(&bad)?;
        for index in 0..outputs {
            check(
                // SAFETY: index < outputs.
                unsafe {
                    (api.LiteRtGetSignatureOutputTensorByIndex)(signature, index, &mut tensor)
                },
                "reading an output tensor",
            )
            .map_err(&bad)?;
            let info = describe(tensor).map_err(&bad)?;
            self.outputs.push(info);
        }
        Ok(())
    }

    /// Compilation options for `accelerators`, with the CPU thread count.
    fn make_options(&mut self, accelerators: c_int, threads: u32) -> Result<(), String> {
        let api = &self.api;
        if !self.options.is_null() {
            // SAFETY: made by LiteRtCreateOptions, not used by any model.
            unsafe { (api.LiteRtDestroyOptions)(self.options) };
            self.options = ptr::null_mut();
        }
        // SAFETY: out-pointers are ours; the opaque options' ownership
        // passes to `options` once added (litert_options.h); the payload is
        // freed by free_c_string.
        unsafe {
            check(
                (api.LiteRtCreateOptions)(&mut self.options),
                "creating options",
            )?;
            check(
                (api.LiteRtSetOptionsHardwareAccelerators)(self.options, accelerators),
                "selecting accelerators",
            )?;
            let payload = CString::new(format!("num_threads = {threads}\n"))
                .expect("no NUL in the options text")
                .into_raw();
            let mut cpu = ptr::null_mut();
            let status = (api.LiteRtCreateOpaqueOptions)(
                c"xnnpack".as_ptr(),
                payload.cast(),
                Some(free_c_string),
                &mut cpu,
            );
            if status != 0 {
                free_c_string(payload.cast());
                return check(status, "creating CPU options");
            }
            let status = (api.LiteRtAddOpaqueOptions)(self.options, cpu);
            if status != 0 {
                (api.LiteRtDestroyOpaqueOptions)(cpu);
                return check(status, "adding CPU options");
            }
        }
        Ok(())
    }

    fn compile(&mut self, settings: &DetectSettings) -> Result<(), String> {
        let asked = match settings.accelerator {
            Accelerator::Gpu => HW_GPU,
            Accelerator::Npu => HW_NPU,
            _ => HW_CPU,
        };
        self.make_options(asked, settings.threads)?;
        // SAFETY: env, model and options are valid handles.
        let status = unsafe {
            (self.api.LiteRtCreateCompiledModel)(
                self.env,
                self.model,
                self.options,
                &mut self.compiled,
            )
        };
        if status == 0 {
            return Ok(());
        }
        let why = check(status, &format!("compiling for {}", settings.accelerator)).unwrap_err();
        if asked == HW_CPU {
            return Err(why);
        }
        tracing::warn!(
            asked = %settings.accelerator,
            "{why}; falling back to CPU with {} thread(s)",
            settings.threads
        );
        self.status.accelerator = Accelerator::Cpu;
        self.status.fallback = Some(why);
        self.compiled = ptr::null_mut();
        self.make_options(HW_CPU, settings.threads)?;
        // SAFETY: as above.
        let status = unsafe {
            (self.api.LiteRtCreateCompiledModel)(
                self.env,
                self.model,
                self.options,
                &mut self.compiled,
            )
        };
        check(status, "compiling for CPU")
    }

    /// Buffers sized from the compiled model: the input's requirements,
    /// and the outputs' after their layouts are settled.
    fn make_buffers(&mut self) -> Result<(), String> {
        let api = &self.api;
        let mut layouts = vec![Layout::EMPTY; self.outputs.len()];
        check(
            // SAFETY: layouts holds one entry per output of signature 0.
            unsafe {
                (api.LiteRtGetCompiledModelOutputTensorLayouts)(
                    self.compiled,
                    0,
                    layouts.len(),
                    layouts.as_mut_ptr(),
                    true,
                )
            },
            "reading output layouts",
        )?;
        let input_type = RankedTensorType {
            element_type: element_code(self.input.element),
            layout: layout_of(&self.input.dims),
        };
        self.input_buffer = self.buffer(true, 0, &input_type)?;
        self.input_len = self.buffer_len(self.input_buffer)?;
        let expected = self
            .input
            .dims
            .iter()
            .map(|&d| d.max(0) as usize)
            .product::<usize>()
            * element_size(self.input.element);
        if self.input_len < expected {
            return Err(format!(
                "input buffer holds {} bytes, the tensor needs {expected}",
                self.input_len
            ));
        }
        for (index, layout) in layouts.iter().enumerate() {
            let dims = layout.dims();
            self.outputs[index].dims = dims.clone();
            let kind = RankedTensorType {
                element_type: element_code(self.outputs[index].element),
                layout: *layout,
            };
            let buffer = self.buffer(false, index, &kind)?;
            self.output_buffers.push(buffer);
            let floats = dims.iter().map(|&d| d.max(0) as usize).product::<usize>();
            let len = self.buffer_len(buffer)?;
            if self.outputs[index].element == ElementType::Float32 && len < floats * 4 {
                return Err(format!(
                    "output {} buffer holds {len} bytes for {floats} floats",
                    self.outputs[index]
                ));
            }
            self.output_lens.push(floats);
        }
        Ok(())
    }

    fn buffer(&self, input: bool, index: usize, kind: &RankedTensorType) -> Result<Handle, String> {
        let api = &self.api;
        let mut requirements = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        // SAFETY: the compiled model is valid; the requirements belong to
        // it and are not destroyed by us.
        unsafe {
            if input {
                check(
                    (api.LiteRtGetCompiledModelInputBufferRequirements)(
                        self.compiled,
                        0,
                        index,
                        &mut requirements,
                    ),
                    "reading input buffer requirements",
                )?;
            } else {
                check(
                    (api.LiteRtGetCompiledModelOutputBufferRequirements)(
                        self.compiled,
                        0,
                        index,
                        &mut requirements,
                    ),
                    "reading output buffer requirements",
                )?;
            }
            let mut size = 0usize;
            check(
                (api.LiteRtGetTensorBufferRequirementsBufferSize)(requirements, &mut size),
                "reading a buffer size",
            )?;
            check(
                (api.LiteRtCreateManagedTensorBufferFromRequirements)(
                    self.env,
                    kind,
                    requirements,
                    &mut buffer,
                ),
                "creating a tensor buffer",
            )?;
        }
        Ok(buffer)
    }

    fn buffer_len(&self, buffer: Handle) -> Result<usize, String> {
        let mut size = 0usize;
        check(
            // SAFETY: buffer is ours.
            unsafe { (self.api.LiteRtGetTensorBufferSize)(buffer, &mut size) },
            "reading a buffer size",
        )?;
        Ok(size)
    }
}

/// Refuses files that cannot be a TFLite flatbuffer before handing them to
/// the runtime: too short, or without the `TFL3` identifier.
pub(crate) fn sniff_tflite(path: &Path) -> Result<(), DetectError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|source| DetectError::Io {
        path: path.to_owned(),
        what: "cannot open the model",
        source,
    })?;
    let read = file.read(&mut head).unwrap_or(0);
    if read < 8 || &head[4..8] != b"TFL3" {
        return Err(DetectError::BadModel {
            path: path.to_owned(),
            reason: "not a TFLite model (no TFL3 identifier)".into(),
        });
    }
    Ok(())
}

fn layout_of(dims: &[i32]) -> Layout {
    let mut layout = Layout::EMPTY;
    layout.bits = dims.len().min(MAX_RANK) as u32;
    for (slot, &d) in layout.dims.iter_mut().zip(dims) {
        *slot = d;
    }
    layout
}

fn element_code(element: ElementType) -> c_int {
    match element {
        ElementType::Float32 => 1,
        ElementType::Uint8 => 3,
        ElementType::Other(code) => code,
    }
}

fn element_size(element: ElementType) -> usize {
    match element {
        ElementType::Float32 => 4,
        _ => 1,
    }
}

impl Engine for LiteRtEngine {
    fn input(&self) -> &TensorInfo {
        &self.input
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn write_input(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), DetectError>,
    ) -> Result<(), DetectError> {
        let mut memory = ptr::null_mut();
        check(
            // SAFETY: the input buffer is ours; while locked, `memory` points at
            // input_len writable bytes.
            unsafe {
                (self.api.LiteRtLockTensorBuffer)(self.input_buffer, &mut memory, LOCK_WRITE)
            },
            "locking the input buffer",
        )
        .map_err(DetectError::Inference)?;
        // SAFETY: while the buffer is locked for writing, `memory` points at
        // input_len writable bytes that nothing else reads or writes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(memory.cast::<u8>(), self.input_len) };
        let expected = self
            .input
            .dims
            .iter()
            .map(|&d| d as usize)
            .product::<usize>()
            * element_size(self.input.element);
        let result = fill(&mut bytes[..expected]);
        // SAFETY: locked above.
        let unlocked = unsafe { (self.api.LiteRtUnlockTensorBuffer)(self.input_buffer) };
        result?;
        check(unlocked, "unlocking the input buffer").map_err(DetectError::Inference)
    }

    fn invoke(&mut self) -> Result<(), DetectError> {
        // SAFETY: one input and one buffer per output, all made for this
        // compiled model.
        let status = unsafe {
            (self.api.LiteRtRunCompiledModel)(
                self.compiled,
                0,
                1,
                &mut self.input_buffer,
                self.output_buffers.len(),
                self.output_buffers.as_mut_ptr(),
            )
        };
        check(status, "running the model").map_err(DetectError::Inference)
    }

    fn read_outputs(&mut self, read: &mut dyn FnMut(&[&[f32]])) -> Result<(), DetectError> {
        let mut views: Vec<&[f32]> = Vec::with_capacity(self.output_buffers.len());
        let mut locked = 0;
        let mut failure = None;
        for (&buffer, &len) in self.output_buffers.iter().zip(&self.output_lens) {
            let mut memory = ptr::null_mut();
            // SAFETY: the buffer is ours and holds at least `len` floats
            // (checked in make_buffers); it stays locked until unlocked below.
            let status =
                unsafe { (self.api.LiteRtLockTensorBuffer)(buffer, &mut memory, LOCK_READ) };
            if status != 0 {
                failure = Some(check(status, "locking an output buffer").unwrap_err());
                break;
            }
            locked += 1;
            // SAFETY: locked for reading, `memory` points at `len` floats
            // (checked in make_buffers), valid until the unlock below,
            // which comes after `views` is dropped.
            views.push(unsafe { std::slice::from_raw_parts(memory.cast::<f32>(), len) });
        }
        if failure.is_none() {
            read(&views);
        }
        drop(views);
        for &buffer in &self.output_buffers[..locked] {
            // SAFETY: locked above.
            unsafe { (self.api.LiteRtUnlockTensorBuffer)(buffer) };
        }
        failure.map_or(Ok(()), |reason| Err(DetectError::Inference(reason)))
    }

    fn status(&self) -> DetectorStatus {
        self.status.clone()
    }
}

impl Drop for LiteRtEngine {
    fn drop(&mut self) {
        let api = &self.api;
        // SAFETY: each handle was made by the matching create call and is
        // destroyed once, dependants first.
        unsafe {
            for &buffer in &self.output_buffers {
                (api.LiteRtDestroyTensorBuffer)(buffer);
            }
            if !self.input_buffer.is_null() {
                (api.LiteRtDestroyTensorBuffer)(self.input_buffer);
            }
            if !self.compiled.is_null() {
                (api.LiteRtDestroyCompiledModel)(self.compiled);
            }
            if !self.options.is_null() {
                (api.LiteRtDestroyOptions)(self.options);
            }
            if !self.model.is_null() {
                (api.LiteRtDestroyModel)(self.model);
            }
            if !self.env.is_null() {
                (api.LiteRtDestroyEnvironment)(self.env);
            }
        }
    }
}
