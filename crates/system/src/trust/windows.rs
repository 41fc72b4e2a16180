//! The Windows LocalMachine `ROOT` store, which Edge, Chrome and every
//! program that uses the Windows certificate verifier trust, changed
//! through the Crypto API in crypt32.dll.
//!
//! NOTE: written against the Crypto API documentation and windows-sys
//! 0.61, and never compiled or run on Windows.

// The Crypto API is a C API, so calling it needs `unsafe`. Each block
// states why its pointers are valid, and the handle types below free what
// the API allocates.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Foundation::{GetLastError, ERROR_ACCESS_DENIED};
use windows_sys::Win32::Security::Cryptography::{
    CertAddEncodedCertificateToStore, CertCloseStore, CertDeleteCertificateFromStore,
    CertFindCertificateInStore, CertFreeCertificateContext, CertOpenStore, CERT_CONTEXT,
    CERT_FIND_SHA1_HASH, CERT_STORE_ADD_NEW, CERT_STORE_OPEN_EXISTING_FLAG,
    CERT_STORE_PROV_SYSTEM_W, CERT_STORE_READONLY_FLAG, CERT_SYSTEM_STORE_LOCAL_MACHINE,
    CRYPT_INTEGER_BLOB, HCERTSTORE, X509_ASN_ENCODING,
};

use super::{CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore};

/// The location shown in reports.
const LOCATION: &str = "Cert:\\LocalMachine\\Root";

/// The LocalMachine `ROOT` store. Changing it needs an elevated process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalMachineRoot;

impl TrustStore for LocalMachineRoot {
    fn name(&self) -> String {
        "system".to_owned()
    }

    fn location(&self) -> String {
        LOCATION.to_owned()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::System
    }

    fn install(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        let store = Store::open(false)?;
        if store.find(ca).is_some() {
            return Ok(Change::AlreadyInstalled);
        }
        store.add(ca)?;
        Ok(Change::Installed)
    }

    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        let store = Store::open(false)?;
        let Some(found) = store.find(ca) else {
            return Ok(Change::NotPresent);
        };
        found.delete()?;
        Ok(Change::Removed)
    }

    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError> {
        let store = Store::open(true)?;
        Ok(match store.find(ca) {
            Some(_) => TrustState::Trusted,
            None => TrustState::Absent,
        })
    }
}

/// An open certificate store, closed on drop.
struct Store(HCERTSTORE);

impl Store {
    fn open(read_only: bool) -> Result<Store, TrustError> {
        let name: Vec<u16> = "ROOT".encode_utf16().chain([0]).collect();
        let mut flags = CERT_SYSTEM_STORE_LOCAL_MACHINE | CERT_STORE_OPEN_EXISTING_FLAG;
        if read_only {
            flags |= CERT_STORE_READONLY_FLAG;
        }
        // SAFETY: `name` is a NUL-terminated UTF-16 string that lives until
        // the call returns, which is what CERT_STORE_PROV_SYSTEM_W expects
        // in `pvPara`. No cryptographic provider is passed (0).
        let handle =
            unsafe { CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, flags, name.as_ptr().cast()) };
        if handle.is_null() {
            return Err(last_error("CertOpenStore"));
        }
        Ok(Store(handle))
    }

    /// Returns the certificate whose SHA-1 hash is `ca`'s, if the store
    /// contains one.
    fn find(&self, ca: &CaCertificate) -> Option<Context> {
        let hash = ca.sha1();
        let blob = CRYPT_INTEGER_BLOB {
            cbData: hash.len() as u32,
            // The API only reads through this pointer.
            pbData: hash.as_ptr().cast_mut(),
        };
        // SAFETY: the store handle is open, `blob` and the hash it points
        // to outlive the call, and a null previous context starts a new
        // search.
        let context = unsafe {
            CertFindCertificateInStore(
                self.0,
                X509_ASN_ENCODING,
                0,
                CERT_FIND_SHA1_HASH,
                ptr::from_ref(&blob).cast::<c_void>(),
                ptr::null(),
            )
        };
        (!context.is_null()).then_some(Context(context))
    }

    fn add(&self, ca: &CaCertificate) -> Result<(), TrustError> {
        let der = ca.der();
        let len = u32::try_from(der.len())
            .map_err(|_| TrustError::InvalidCertificate("larger than 4 GiB".to_owned()))?;
        // SAFETY: the store handle is open and `der` outlives the call. With a
        // null output pointer the call returns no context.
        let added = unsafe {
            CertAddEncodedCertificateToStore(
                self.0,
                X509_ASN_ENCODING,
                der.as_ptr(),
                len,
                CERT_STORE_ADD_NEW,
                ptr::null_mut(),
            )
        };
        if added == 0 {
            return Err(last_error("CertAddEncodedCertificateToStore"));
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from CertOpenStore and is closed once.
        unsafe {
            CertCloseStore(self.0, 0);
        }
    }
}

/// A certificate context returned by a search, freed on drop.
struct Context(*mut CERT_CONTEXT);

impl Context {
    fn delete(self) -> Result<(), TrustError> {
        let context = self.0;
        // CertDeleteCertificateFromStore frees the context even when it
        // fails, so Drop must not free it again.
        std::mem::forget(self);
        // SAFETY: `context` came from CertFindCertificateInStore and is not
        // used after this call.
        let deleted = unsafe { CertDeleteCertificateFromStore(context) };
        if deleted == 0 {
            return Err(last_error("CertDeleteCertificateFromStore"));
        }
        Ok(())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context came from CertFindCertificateInStore and is
        // freed once.
        unsafe {
            CertFreeCertificateContext(self.0);
        }
    }
}

/// Returns the calling thread's last error as a [`TrustError`], with access
/// denied mapped to [`TrustError::AdminRequired`].
fn last_error(call: &'static str) -> TrustError {
    // SAFETY: GetLastError only reads thread-local state.
    let code = unsafe { GetLastError() };
    if code == ERROR_ACCESS_DENIED {
        return TrustError::AdminRequired {
            location: LOCATION.to_owned(),
        };
    }
    TrustError::Api { call, code }
}
