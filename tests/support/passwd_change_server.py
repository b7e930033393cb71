"""An SSH server (asyncssh) on 127.0.0.1 whose every password has expired: it answers a
password request with SSH_MSG_USERAUTH_PASSWD_CHANGEREQ (RFC 4252, section 8), which OpenSSH's
sshd never sends. Prints "<port> <host public key>" on one line, then serves until killed."""

import asyncio

import asyncssh

MESSAGE = "Your password has expired."


class Server(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        raise asyncssh.PasswordChangeRequired(MESSAGE)

    def change_password(self, username, old_password, new_password):
        return False


async def main():
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[key]
    )
    port = server.sockets[0].getsockname()[1]
    print(port, key.export_public_key().decode().strip(), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
