//! sntrup761 (patch, part E): `sntrup761x25519-sha512` and its older name
//! `sntrup761x25519-sha512@openssh.com`, the hybrid post-quantum key
//! exchange OpenSSH 9.0 to 9.8 negotiate by default.
//!
//! Followed: openssh-portable `kexsntrup761x25519.c` (the KEM), `kexgen.c`
//! (the exchange hash) and `kexc25519.c` (`kexc25519_shared_key_ext` with
//! `raw = 1`), and draft-ietf-sshm-ntruprime-ssh:
//!
//! - the client sends, in SSH_MSG_KEX_ECDH_INIT (30), one string: its
//!   sntrup761 public key (1158 bytes) followed by its X25519 public key
//!   (32 bytes);
//! - the server replies, in SSH_MSG_KEX_ECDH_REPLY (31), its host key, one
//!   string: the sntrup761 ciphertext (1039 bytes) followed by its X25519
//!   public key (32 bytes), and the signature;
//! - K = SHA-512(sntrup761 shared key (32 bytes) || X25519 shared key (32
//!   bytes, raw, not an mpint)); an all-zero X25519 key is refused;
//! - K goes into the exchange hash and the key derivation as a *string* (not
//!   an mpint), the exchange hash is SHA-512 over
//!   `V_C, V_S, I_C, I_S, K_S, Q_C, Q_S` (each a string) followed by K.
//!
//! The KEM is the `sntrup761` crate (pure Rust, checked against the IETF
//! draft's known answers); this module mirrors `hybrid_mlkem.rs`.

use byteorder::{BigEndian, ByteOrder};
use curve25519_dalek::montgomery::MontgomeryPoint;
use log::debug;
use sha2::Digest;
use sntrup761::{Ciphertext, DecapsulationKey, EncapsulationKey};
use ssh_encoding::{Encode, Writer};

use super::{KexAlgorithm, KexAlgorithmImplementor, KexType, SharedSecret, compute_keys};
use crate::mac;
use crate::session::Exchange;
use crate::{CryptoVec, Error, cipher, msg};

const SNTRUP761_PUBLIC_KEY_SIZE: usize = sntrup761::PUBLIC_KEY_SIZE;
const SNTRUP761_CIPHERTEXT_SIZE: usize = sntrup761::CIPHERTEXT_SIZE;
const X25519_PUBLIC_KEY_SIZE: usize = 32;

/// sntrup761 (patch, part E): both names make this one algorithm.
pub struct Sntrup761X25519KexType {}

impl KexType for Sntrup761X25519KexType {
    fn make(&self) -> KexAlgorithm {
        Sntrup761X25519Kex::default().into()
    }
}

/// sntrup761 (patch, part E): the state of one exchange.
#[doc(hidden)]
#[derive(Default)]
pub struct Sntrup761X25519Kex {
    sntrup_secret: Option<Box<DecapsulationKey>>,
    x25519_secret: Option<[u8; 32]>,
    /// SHA-512(sntrup761 key || X25519 key), once computed.
    shared: Option<[u8; 64]>,
}

impl std::fmt::Debug for Sntrup761X25519Kex {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Sntrup761X25519Kex {{ sntrup_secret: [hidden], x25519_secret: [hidden], shared: [hidden] }}",
        )
    }
}

impl Drop for Sntrup761X25519Kex {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(s) = self.x25519_secret.as_mut() {
            s.zeroize();
        }
        if let Some(s) = self.shared.as_mut() {
            s.zeroize();
        }
    }
}

/// K before its string encoding: SHA-512(sntrup761 key || X25519 key), as
/// `kex_kem_sntrup761x25519_enc` / `_dec` compute it. `None` for an all-zero
/// X25519 key (a low-order point: `SSH_ERR_KEY_INVALID_EC_VALUE` in OpenSSH).
pub(crate) fn combine(kem_key: &[u8], x25519_key: &MontgomeryPoint) -> Option<[u8; 64]> {
    if x25519_key.0 == [0u8; 32] {
        return None;
    }
    let mut hasher = sha2::Sha512::new();
    hasher.update(kem_key);
    hasher.update(x25519_key.0);
    Some(hasher.finalize().into())
}

fn x25519_point(bytes: &[u8]) -> MontgomeryPoint {
    let mut p = MontgomeryPoint([0; 32]);
    p.0.copy_from_slice(bytes);
    p
}

impl KexAlgorithmImplementor for Sntrup761X25519Kex {
    fn skip_exchange(&self) -> bool {
        false
    }

    fn server_dh(&mut self, exchange: &mut Exchange, payload: &[u8]) -> Result<(), Error> {
        debug!("server_dh (sntrup761x25519)");

        if payload.first() != Some(&msg::KEX_ECDH_INIT) || payload.len() < 5 {
            return Err(Error::Inconsistent);
        }
        #[allow(clippy::indexing_slicing)] // length checked
        let c_init_len = BigEndian::read_u32(&payload[1..]) as usize;
        if payload.len() < 5 + c_init_len {
            return Err(Error::Inconsistent);
        }
        if c_init_len != SNTRUP761_PUBLIC_KEY_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }
        #[allow(clippy::indexing_slicing)] // length checked
        let c_init = &payload[5..5 + c_init_len];
        let (c_pq, c_x25519) = c_init.split_at(SNTRUP761_PUBLIC_KEY_SIZE);

        let c_pq = EncapsulationKey::try_from(c_pq).map_err(|_| Error::Kex)?;
        let (ciphertext, kem_key) = c_pq.encapsulate(rand::rng());

        let s_secret = rand::random::<[u8; 32]>();
        let s_x25519 = MontgomeryPoint::mul_base_clamped(s_secret);
        let x25519_key = x25519_point(c_x25519).mul_clamped(s_secret);
        let Some(shared) = combine(kem_key.as_ref(), &x25519_key) else {
            debug!("client sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        };

        exchange.server_ephemeral.clear();
        exchange
            .server_ephemeral
            .extend_from_slice(ciphertext.as_ref());
        exchange.server_ephemeral.extend_from_slice(&s_x25519.0);
        self.shared = Some(shared);
        Ok(())
    }

    fn client_dh(
        &mut self,
        client_ephemeral: &mut Vec<u8>,
        writer: &mut impl Writer,
    ) -> Result<(), Error> {
        let (pq_pk, pq_sk) = sntrup761::generate_key(rand::rng());
        let x25519_secret = rand::random::<[u8; 32]>();
        let x25519_pk = MontgomeryPoint::mul_base_clamped(x25519_secret);

        client_ephemeral.clear();
        client_ephemeral.extend_from_slice(pq_pk.as_ref());
        client_ephemeral.extend_from_slice(&x25519_pk.0);

        msg::KEX_ECDH_INIT.encode(writer)?;
        client_ephemeral.as_slice().encode(writer)?;

        self.sntrup_secret = Some(Box::new(pq_sk));
        self.x25519_secret = Some(x25519_secret);
        Ok(())
    }

    fn compute_shared_secret(&mut self, remote_pubkey_: &[u8]) -> Result<(), Error> {
        if remote_pubkey_.len() != SNTRUP761_CIPHERTEXT_SIZE + X25519_PUBLIC_KEY_SIZE {
            return Err(Error::Kex);
        }
        let (ciphertext, s_x25519) = remote_pubkey_.split_at(SNTRUP761_CIPHERTEXT_SIZE);
        let ciphertext = Ciphertext::try_from(ciphertext).map_err(|_| Error::Kex)?;

        let pq_sk = self.sntrup_secret.take().ok_or(Error::KexInit)?;
        // Implicit rejection: a forged ciphertext yields a key the server does
        // not have, and the exchange hash's signature then fails.
        let kem_key = pq_sk.decapsulate(&ciphertext);
        let x25519_secret = self.x25519_secret.take().ok_or(Error::KexInit)?;
        let x25519_key = x25519_point(s_x25519).mul_clamped(x25519_secret);
        let Some(shared) = combine(kem_key.as_ref(), &x25519_key) else {
            debug!("server sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        };
        self.shared = Some(shared);
        Ok(())
    }

    fn shared_secret_bytes(&self) -> Option<&[u8]> {
        // The combined K (before its string encoding), as OpenSSH keeps it.
        self.shared.as_ref().map(|k| k.as_slice())
    }

    fn compute_exchange_hash(
        &self,
        key: &[u8],
        exchange: &Exchange,
        buffer: &mut CryptoVec,
    ) -> Result<Vec<u8>, Error> {
        buffer.clear();
        exchange.client_id.encode(buffer)?;
        exchange.server_id.encode(buffer)?;
        exchange.client_kex_init.encode(buffer)?;
        exchange.server_kex_init.encode(buffer)?;
        buffer.extend(key);
        exchange.client_ephemeral.encode(buffer)?;
        exchange.server_ephemeral.encode(buffer)?;
        let shared = self.shared.as_ref().ok_or(Error::KexInit)?;
        shared.as_slice().encode(buffer)?;

        let mut hasher = sha2::Sha512::new();
        hasher.update(&buffer);
        Ok(hasher.finalize().to_vec())
    }

    fn compute_keys(
        &self,
        session_id: &[u8],
        exchange_hash: &[u8],
        cipher: cipher::Name,
        remote_to_local_mac: mac::Name,
        local_to_remote_mac: mac::Name,
        is_server: bool,
    ) -> Result<super::cipher::CipherPair, Error> {
        let shared = self.shared.as_ref().ok_or(Error::KexInit)?;
        let shared_secret = SharedSecret::from_string(shared)?;
        compute_keys::<sha2::Sha512>(
            Some(&shared_secret),
            session_id,
            exchange_hash,
            cipher,
            remote_to_local_mac,
            local_to_remote_mac,
            is_server,
        )
    }
}

#[cfg(test)]
mod tests;
