//! Every copy of tensor data between the host and a net's tensors goes through here, and is
//! counted per thread: reading a tensor's data on the host is a download (on a GPU a copy
//! and a stream sync), making a tensor from host data an upload. The counts let a test
//! prove that a pass of the tensor-op backend stays on its device ([`counts`]).

use std::cell::Cell;

use candle_core::{Device, Tensor, WithDType};

use crate::error::{Error, Result};

/// Transfers made by this thread so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub downloads: u64,
    pub download_bytes: u64,
    pub uploads: u64,
    pub upload_bytes: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            downloads: self.downloads - o.downloads,
            download_bytes: self.download_bytes - o.download_bytes,
            uploads: self.uploads - o.uploads,
            upload_bytes: self.upload_bytes - o.upload_bytes,
        }
    }
}

thread_local! {
    static COUNTS: Cell<Counts> = const { Cell::new(Counts { downloads: 0, download_bytes: 0, uploads: 0, upload_bytes: 0 }) };
}

/// This thread's transfers so far (subtract two readings to count a span).
pub fn counts() -> Counts {
    COUNTS.with(Cell::get)
}

fn count_download(bytes: usize) {
    COUNTS.with(|c| {
        let mut v = c.get();
        v.downloads += 1;
        v.download_bytes += bytes as u64;
        c.set(v);
    });
}

fn count_upload(bytes: usize) {
    COUNTS.with(|c| {
        let mut v = c.get();
        v.uploads += 1;
        v.upload_bytes += bytes as u64;
        c.set(v);
    });
}

/// Runs `f` on the contiguous `f32` data of `t` (copied to the host first when `t` lives
/// on another device).
pub fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    count_download(t.elem_count() * 4);
    let t = if t.device().is_cpu() {
        t.contiguous()?
    } else {
        t.to_device(&Device::Cpu)?.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::internal("a tensor moved to the CPU is elsewhere"));
    };
    let data = cpu.as_slice::<f32>()?;
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::Shape("non-contiguous tensor".into()))?;
    Ok(f(&data[a..b]))
}

/// The tensor's data as an owned host vector, flattened.
pub fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    download(t)
}

/// The tensor's data (any dtype) as an owned host vector, flattened.
pub fn download<T: WithDType>(t: &Tensor) -> Result<Vec<T>> {
    count_download(t.elem_count() * t.dtype().size_in_bytes());
    Ok(t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<T>()?)
}

/// A tensor of shape `dims` on `device` from host data.
pub fn upload<T: WithDType>(
    v: Vec<T>,
    dims: impl Into<candle_core::Shape>,
    device: &Device,
) -> Result<Tensor> {
    count_upload(v.len() * T::DTYPE.size_in_bytes());
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?.to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_are_counted_per_thread() {
        let before = counts();
        let t = upload(vec![1f32, 2.0, 3.0], 3, &Device::Cpu).unwrap();
        assert_eq!(download::<f32>(&t).unwrap(), [1.0, 2.0, 3.0]);
        let sum = with_host(&t, |v| v.iter().sum::<f32>()).unwrap();
        assert_eq!(sum, 6.0);
        let d = counts() - before;
        assert_eq!((d.uploads, d.downloads), (1, 2));
        assert_eq!((d.upload_bytes, d.download_bytes), (12, 24));
        // another thread's transfers are its own
        std::thread::spawn(|| {
            download::<f32>(&Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap())
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(counts() - before, d);
    }
}
