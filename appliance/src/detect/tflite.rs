//! The classic TensorFlow Lite backend: `libtensorflowlite_c.so` loaded at
//! run time and driven through its C API (`TfLiteModel`,
//! `TfLiteInterpreter`), with an optional external delegate.
//!
//! External delegates are plugins following TFLite's convention: a shared
//! library exporting `tflite_plugin_create_delegate(keys, values, count,
//! report_error)` and `tflite_plugin_destroy_delegate(delegate)`, such as
//! Coral's `libedgetpu.so.1` or NXP's `libvx_delegate.so`. When the plugin
//! cannot be loaded or the interpreter cannot be built with it, the model
//! runs on the CPU and the status says why.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::ManuallyDrop;
use std::path::Path;
use std::ptr;

use libloading::Library;

use super::litert::sniff_tflite;
use super::{
    check_elf_arch, Accelerator, Backend, DelegateSettings, DetectError, DetectSettings,
    DetectorStatus, ElementType, Engine, TensorInfo,
};

type Handle = *mut c_void;

runtime_api! {
    "a TensorFlow Lite C library";
    TfLiteVersion: fn() -> *const c_char;
    TfLiteModelCreateFromFile: fn(*const c_char) -> Handle;
    TfLiteModelDelete: fn(Handle);
    TfLiteInterpreterOptionsCreate: fn() -> Handle;
    TfLiteInterpreterOptionsDelete: fn(Handle);
    TfLiteInterpreterOptionsSetNumThreads: fn(Handle, i32);
    TfLiteInterpreterOptionsAddDelegate: fn(Handle, Handle);
    TfLiteInterpreterCreate: fn(Handle, Handle) -> Handle;
    TfLiteInterpreterDelete: fn(Handle);
    TfLiteInterpreterAllocateTensors: fn(Handle) -> c_int;
    TfLiteInterpreterGetInputTensorCount: fn(Handle) -> i32;
    TfLiteInterpreterGetInputTensor: fn(Handle, i32) -> Handle;
    TfLiteInterpreterGetOutputTensorCount: fn(Handle) -> i32;
    TfLiteInterpreterGetOutputTensor: fn(Handle, i32) -> Handle;
    TfLiteInterpreterInvoke: fn(Handle) -> c_int;
    TfLiteTensorType: fn(Handle) -> c_int;
    TfLiteTensorNumDims: fn(Handle) -> i32;
    TfLiteTensorDim: fn(Handle, i32) -> i32;
    TfLiteTensorByteSize: fn(Handle) -> usize;
    TfLiteTensorData: fn(Handle) -> *mut c_void;
    TfLiteTensorName: fn(Handle) -> *const c_char;
}

type CreateDelegate = unsafe extern "C" fn(
    *const *const c_char,
    *const *const c_char,
    usize,
    Option<unsafe extern "C" fn(*const c_char)>,
) -> Handle;
type DestroyDelegate = unsafe extern "C" fn(Handle);

/// An external delegate made by its plugin.
struct Delegate {
    handle: Handle,
    destroy: DestroyDelegate,
    _library: Library,
}

impl Drop for Delegate {
    fn drop(&mut self) {
        // SAFETY: made by the plugin's create function, destroyed once,
        // after the interpreter that used it.
        unsafe { (self.destroy)(self.handle) };
    }
}

unsafe extern "C" fn report_delegate_error(message: *const c_char) {
    if !message.is_null() {
        // SAFETY: the plugin passes a C string.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        tracing::warn!("delegate: {text}");
    }
}

fn load_delegate(settings: &DelegateSettings) -> Result<Delegate, String> {
    let path = &settings.library;
    check_elf_arch(path).map_err(|err| err.to_string())?;
    // SAFETY: loading a delegate plugin runs its initialisers, as TFLite's
    // own external-delegate loader does.
    let library = unsafe { Library::new(path) }.map_err(|err| format!("cannot load: {err}"))?;
    // SAFETY: the plugin convention's signatures.
    let (create, destroy) = unsafe {
        let create = *library
            .get::<CreateDelegate>(b"tflite_plugin_create_delegate\0")
            .map_err(|_| "does not export tflite_plugin_create_delegate".to_string())?;
        let destroy = *library
            .get::<DestroyDelegate>(b"tflite_plugin_destroy_delegate\0")
            .map_err(|_| "does not export tflite_plugin_destroy_delegate".to_string())?;
        (create, destroy)
    };
    let to_c =
        |text: &str| CString::new(text).map_err(|_| format!("option {text:?} contains a NUL byte"));
    let keys = settings
        .options
        .iter()
        .map(|(k, _)| to_c(k))
        .collect::<Result<Vec<_>, _>>()?;
    let values = settings
        .options
        .iter()
        .map(|(_, v)| to_c(v))
        .collect::<Result<Vec<_>, _>>()?;
    let key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let value_ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
    // SAFETY: arrays of `len` valid C strings that outlive the call.
    let handle = unsafe {
        create(
            key_ptrs.as_ptr(),
            value_ptrs.as_ptr(),
            key_ptrs.len(),
            Some(report_delegate_error),
        )
    };
    if handle.is_null() {
        return Err("tflite_plugin_create_delegate returned no delegate".into());
    }
    Ok(Delegate {
        handle,
        destroy,
        _library: library,
    })
}

/// An interpreter with its model (and delegate), tensors allocated.
pub struct TfLiteEngine {
    /// Dropped after the interpreter (Drop) and before the library.
    delegate: Option<Delegate>,
    api: Api,
    model: Handle,
    interpreter: Handle,
    input_tensor: Handle,
    output_tensors: Vec<Handle>,
    input: TensorInfo,
    outputs: Vec<TensorInfo>,
    status: DetectorStatus,
}

// SAFETY: the interpreter is only used through `&mut self`, from one thread
// at a time; TFLite interpreters may move between threads.
unsafe impl Send for TfLiteEngine {}

impl TfLiteEngine {
    pub fn open(model_path: &Path, settings: &DetectSettings) -> Result<Self, DetectError> {
        let api = Api::load(&settings.runtime)?;
        sniff_tflite(model_path)?;
        let bad = |reason: String| DetectError::BadModel {
            path: model_path.to_owned(),
            reason,
        };
        let c_path = CString::new(model_path.as_os_str().as_encoded_bytes())
            .map_err(|_| bad("path contains a NUL byte".into()))?;
        // SAFETY: a valid C string; TFLite verifies the flatbuffer.
        let model = unsafe { (api.TfLiteModelCreateFromFile)(c_path.as_ptr()) };
        // SAFETY: a static C string.
        let version = unsafe { CStr::from_ptr((api.TfLiteVersion)()) }
            .to_string_lossy()
            .into_owned();
        let mut engine = TfLiteEngine {
            delegate: None,
            api,
            model,
            interpreter: ptr::null_mut(),
            input_tensor: ptr::null_mut(),
            output_tensors: Vec::new(),
            input: TensorInfo {
                name: String::new(),
                element: ElementType::Other(0),
                dims: Vec::new(),
            },
            outputs: Vec::new(),
            status: DetectorStatus {
                backend: Backend::Tflite,
                runtime: settings.runtime.clone(),
                model: String::new(),
                requested: settings.accelerator,
                accelerator: Accelerator::Cpu,
                fallback: None,
                threads: settings.threads,
            },
        };
        if model.is_null() {
            return Err(bad(format!(
                "TensorFlow Lite {version} cannot read it (not a valid model file)"
            )));
        }
        if let Some(delegate) = &settings.delegate {
            match load_delegate(delegate).and_then(|d| {
                let interpreter = engine.interpreter(settings.threads, Some(&d))?;
                Ok((d, interpreter))
            }) {
                Ok((delegate, interpreter)) => {
                    engine.delegate = Some(delegate);
                    engine.interpreter = interpreter;
                    engine.status.accelerator = Accelerator::Delegate;
                }
                Err(reason) => {
                    let why = format!("delegate {}: {reason}", delegate.library.display());
                    tracing::warn!("{why}; falling back to CPU");
                    engine.status.fallback = Some(why);
                }
            }
        }
        if engine.interpreter.is_null() {
            engine.interpreter = engine.interpreter(settings.threads, None).map_err(&bad)?;
        }
        engine.describe().map_err(bad)?;
        Ok(engine)
    }

    /// An interpreter with tensors allocated, or why not.
    fn interpreter(&self, threads: u32, delegate: Option<&Delegate>) -> Result<Handle, String> {
        let api = &self.api;
        // SAFETY: options are made, used and deleted here; the model and
        // delegate outlive the interpreter (see Drop).
        unsafe {
            let options = (api.TfLiteInterpreterOptionsCreate)();
            if options.is_null() {
                return Err("cannot create interpreter options".into());
            }
            (api.TfLiteInterpreterOptionsSetNumThreads)(options, threads as i32);
            if let Some(delegate) = delegate {
                (api.TfLiteInterpreterOptionsAddDelegate)(options, delegate.handle);
            }
            let interpreter = (api.TfLiteInterpreterCreate)(self.model, options);
            (api.TfLiteInterpreterOptionsDelete)(options);
            if interpreter.is_null() {
                return Err("cannot build an interpreter for it (unsupported operators, or the delegate refused it)".into());
            }
            if (api.TfLiteInterpreterAllocateTensors)(interpreter) != 0 {
                (api.TfLiteInterpreterDelete)(interpreter);
                return Err("cannot allocate its tensors".into());
            }
            Ok(interpreter)
        }
    }

    fn describe(&mut self) -> Result<(), String> {
        let api = &self.api;
        // SAFETY: the interpreter is valid and its tensors allocated;
        // tensor pointers live as long as the interpreter.
        unsafe {
            let inputs = (api.TfLiteInterpreterGetInputTensorCount)(self.interpreter);
            if inputs != 1 {
                return Err(format!("has {inputs} inputs, a detector takes one image"));
            }
            self.input_tensor = (api.TfLiteInterpreterGetInputTensor)(self.interpreter, 0);
            self.input = self.info(self.input_tensor);
            let outputs = (api.TfLiteInterpreterGetOutputTensorCount)(self.interpreter);
            for index in 0..outputs {
                let tensor = (api.TfLiteInterpreterGetOutputTensor)(self.interpreter, index);
                self.output_tensors.push(tensor);
                self.outputs.push(self.info(tensor));
            }
        }
        Ok(())
    }

    /// # Safety
    /// `tensor` must be a tensor of this interpreter.
    unsafe fn info(&self, tensor: Handle) -> TensorInfo {
        let api = &self.api;
        // SAFETY: the caller guarantees `tensor` belongs to this
        // interpreter; the name and dims it returns live as long as it.
        unsafe {
            let name = (api.TfLiteTensorName)(tensor);
            TensorInfo {
                name: if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                },
                element: ElementType::from_code((api.TfLiteTensorType)(tensor)),
                dims: (0..(api.TfLiteTensorNumDims)(tensor))
                    .map(|i| (api.TfLiteTensorDim)(tensor, i))
                    .collect(),
            }
        }
    }

    /// The tensor's memory and its length in bytes.
    fn memory(&self, tensor: Handle) -> Result<(*mut c_void, usize), DetectError> {
        // SAFETY: the tensor belongs to the live interpreter.
        let (data, len) = unsafe {
            (
                (self.api.TfLiteTensorData)(tensor),
                (self.api.TfLiteTensorByteSize)(tensor),
            )
        };
        if data.is_null() {
            return Err(DetectError::Inference("a tensor has no memory".into()));
        }
        Ok((data, len))
    }
}

impl Engine for TfLiteEngine {
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
        let (data, len) = self.memory(self.input_tensor)?;
        // SAFETY: the input tensor's memory holds `len` bytes and nothing
        // else touches it until the next invoke.
        fill(unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) })
    }

    fn invoke(&mut self) -> Result<(), DetectError> {
        // SAFETY: a valid interpreter with allocated tensors.
        if unsafe { (self.api.TfLiteInterpreterInvoke)(self.interpreter) } != 0 {
            return Err(DetectError::Inference(
                "TfLiteInterpreterInvoke failed".into(),
            ));
        }
        Ok(())
    }

    fn read_outputs(&mut self, read: &mut dyn FnMut(&[&[f32]])) -> Result<(), DetectError> {
        let mut views = Vec::with_capacity(self.output_tensors.len());
        for &tensor in &self.output_tensors {
            let (data, len) = self.memory(tensor)?;
            // SAFETY: float32 outputs (checked when the detector was made),
            // aligned by TFLite's arena, valid until the next invoke.
            views.push(unsafe { std::slice::from_raw_parts(data.cast::<f32>(), len / 4) });
        }
        read(&views);
        Ok(())
    }

    fn status(&self) -> DetectorStatus {
        self.status.clone()
    }
}

impl Drop for TfLiteEngine {
    fn drop(&mut self) {
        // SAFETY: interpreter first, then the model; the delegate field is
        // dropped after this, once the interpreter no longer uses it.
        unsafe {
            if !self.interpreter.is_null() {
                (self.api.TfLiteInterpreterDelete)(self.interpreter);
            }
            if !self.model.is_null() {
                (self.api.TfLiteModelDelete)(self.model);
            }
        }
    }
}
