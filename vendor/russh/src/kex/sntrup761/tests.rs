//! sntrup761 (patch, part E): unit tests.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Known answer for the combination, from published inputs: the sntrup761
/// secret key and ciphertext of draft-josefsson-ntruprime-streamlined-00's
/// test vector 0 (the `sntrup761` crate's `tests/data/kat0_*`), whose shared
/// key is 344ca5e2... (OpenSSH's own `sntrup761.c`, openssh-portable 0ef0f5a8,
/// compiled on its own with OpenSSL's SHA-512, decapsulates it to the same key,
/// as it does test vector 1); the X25519 pair of RFC 7748 section 6.1 (shared key
/// 4a5d9d5b...). The expected K was computed outside Rust (Python's hashlib:
/// SHA-512 of the two keys concatenated), as kex_kem_sntrup761x25519_dec does.
#[test]
fn combined_secret_known_answer() {
    let sk = DecapsulationKey::try_from(hex(include_str!("kat0_sk.hex")).as_slice()).unwrap();
    let ct = Ciphertext::try_from(hex(include_str!("kat0_ct.hex")).as_slice()).unwrap();
    let kem_key = sk.decapsulate(&ct);
    assert_eq!(
        kem_key.as_ref(),
        hex("344ca5e25f6da5ea95e4a695b1c5446eca9859334532e4a9537669f012c743a2").as_slice()
    );

    let alice: [u8; 32] = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        .try_into()
        .unwrap();
    let bob_pub = x25519_point(&hex(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    ));
    let x25519_key = bob_pub.mul_clamped(alice);
    assert_eq!(
        x25519_key.0.as_slice(),
        hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742").as_slice()
    );

    let k = combine(kem_key.as_ref(), &x25519_key).unwrap();
    assert_eq!(
        k.as_slice(),
        hex(concat!(
            "9984931de666438023b224978d616b9e0d57fdc307428cc1b0240e1fa8567dfa",
            "a857f38c70ac86f5f35e04818325556cbf78b2ab6f6e0cb927e559822527ff7b"
        ))
        .as_slice()
    );
    // As a string in the exchange hash and the key derivation (uint32 length 64).
    let encoded = SharedSecret::from_string(&k).unwrap();
    assert_eq!(&encoded.as_bytes()[..4], &[0, 0, 0, 64]);
    assert_eq!(&encoded.as_bytes()[4..], k.as_slice());
}

#[test]
fn an_all_zero_x25519_key_is_refused() {
    assert!(combine(&[7u8; 32], &MontgomeryPoint([0; 32])).is_none());
}

/// One exchange between a client and a server half: the same K, the same
/// exchange hash (64 bytes: SHA-512), and the message sizes of the draft.
#[test]
fn client_and_server_agree() {
    let mut client = Sntrup761X25519Kex::default();
    let mut server = Sntrup761X25519Kex::default();
    let mut client_ephemeral = Vec::new();
    let mut init = Vec::new();
    client.client_dh(&mut client_ephemeral, &mut init).unwrap();
    assert_eq!(init[0], msg::KEX_ECDH_INIT);
    assert_eq!(client_ephemeral.len(), 1158 + 32);
    assert_eq!(&init[1..5], &((1158u32 + 32).to_be_bytes()));

    let mut exchange = Exchange {
        client_id: b"SSH-2.0-Test_Client".to_vec(),
        server_id: b"SSH-2.0-Test_Server".to_vec(),
        client_kex_init: bytes::Bytes::from_static(b"client_kex_init"),
        server_kex_init: bytes::Bytes::from_static(b"server_kex_init"),
        client_ephemeral: client_ephemeral.clone(),
        server_ephemeral: Vec::new(),
        gex: None,
    };
    server.server_dh(&mut exchange, &init).unwrap();
    assert_eq!(exchange.server_ephemeral.len(), 1039 + 32);
    client
        .compute_shared_secret(&exchange.server_ephemeral)
        .unwrap();
    assert_eq!(client.shared, server.shared);

    let mut buffer = CryptoVec::new();
    let hc = client
        .compute_exchange_hash(b"host key", &exchange, &mut buffer)
        .unwrap();
    let hs = server
        .compute_exchange_hash(b"host key", &exchange, &mut buffer)
        .unwrap();
    assert_eq!(hc, hs);
    assert_eq!(hc.len(), 64);
}

#[test]
fn wrong_sizes_are_refused() {
    let mut client = Sntrup761X25519Kex::default();
    let mut eph = Vec::new();
    let mut init = Vec::new();
    client.client_dh(&mut eph, &mut init).unwrap();
    assert!(client.compute_shared_secret(&[0u8; 100]).is_err());

    let mut server = Sntrup761X25519Kex::default();
    let mut short = Vec::new();
    msg::KEX_ECDH_INIT.encode(&mut short).unwrap();
    vec![0u8; 100].encode(&mut short).unwrap();
    assert!(
        server
            .server_dh(&mut Exchange::default(), &short)
            .is_err()
    );
    assert!(server.server_dh(&mut Exchange::default(), &[30]).is_err());
}
