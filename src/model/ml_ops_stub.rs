//! Temporary stand-in while the ML ops are finished.
pub fn onnx() -> tract_onnx::Onnx {
    tract_onnx::onnx()
}
