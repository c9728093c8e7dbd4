"""The Python that runs inside the sandbox (as text, written into its work directory):

- GUARD runs the model's code behind an audit hook (no sockets, no processes, no writes outside the work
  directory);
- JAIL, run as the namespace's root before privileges are dropped, makes every mount read-only but the
  work directory (mount_setattr), then execs the program.
See workers/sandbox.py for how they are used.
"""

GUARD = r'''
import posix, sys

# Everything the hook uses is bound as a default argument: no global or closure the sandboxed code could
# rebind; the helpers' __code__ and __defaults__ cannot be replaced, and the hook itself is out of reach.
ROOT = posix.getcwd()
REFUSED = ("socket.", "ctypes.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
           "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "os.symlink", "os.chdir", "os.chroot", "fcntl.ioctl",
           "gc.get_", "sys.settrace", "sys.setprofile", "resource.setrlimit", "resource.prlimit")
PATHS = type(type.__dict__)({  # read-only: event -> indexes of its args that must lie under ROOT
    "os.rename": (0, 1), "os.link": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.chflags": (0,), "os.utime": (0,),
    "os.setxattr": (0,), "os.removexattr": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,),
    "shutil.copystat": (1,), "shutil.copytree": (1,), "shutil.move": (0, 1), "shutil.rmtree": (0,),
    "shutil.chown": (0,), "shutil.make_archive": (0,), "shutil.unpack_archive": (1,)})
WRITE_FLAGS = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_APPEND | posix.O_TRUNC


def norm(path, root=ROOT, type=type, str=str, bytes=bytes):
    """`path` made absolute without '.' parts; None when it cannot be checked ('..', path objects)."""
    if type(path) is bytes:
        path = path.decode("utf-8", "surrogateescape")
    if type(path) is not str or ".." in path.split("/"):
        return None
    parts = (path if path[:1] == "/" else root + "/" + path).split("/")
    return "/" + "/".join([p for p in parts if p and p != "."])


def inside(path, root=ROOT, norm=norm):
    full = norm(path)
    return full is not None and (full + "/").startswith(root + "/")


def is_dir(full, stat=posix.stat, item=tuple.__getitem__, OSError=OSError):
    try:
        return item(stat(full), 0) & 0o170000 == 0o040000
    except OSError:
        return False


def may_open(path, mode, flags, write_flags=WRITE_FLAGS, inside=inside, norm=norm, is_dir=is_dir, type=type,
             str=str, int=int):
    """Reads anywhere; writes and directory handles (usable as dir_fd) only under ROOT."""
    if type(path) is int or inside(path):
        return True
    if type(mode) is str and ("w" in mode or "a" in mode or "x" in mode or "+" in mode):
        return False
    if type(flags) is int and flags & write_flags:
        return False
    full = norm(path)
    return type(mode) is str if full is None else not is_dir(full)


def hook(event, args, refused=REFUSED, paths=PATHS, may_open=may_open, inside=inside, root=ROOT, type=type,
         str=str, helpers=(norm, inside, is_dir, may_open), PermissionError=PermissionError):
    if event.startswith(refused):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and type(args[0]) is str and args[0] == "_posixsubprocess":
        raise PermissionError("sandbox: starting processes is not allowed (import _posixsubprocess)")
    if event == "object.__setattr__":
        for helper in helpers:
            if args[0] is helper:
                raise PermissionError("sandbox: changing the sandbox's audit hook is not allowed")
    if event == "open" and not may_open(*args):
        raise PermissionError(f"sandbox: writing or opening directories outside {root} is not allowed")
    for index in paths.get(event, ()):
        if not inside(args[index]):
            raise PermissionError(f"sandbox: {event} outside {root} is not allowed")


sys.addaudithook(hook)
del hook
sys.argv = sys.argv[1:]
with open(sys.argv[0]) as main:
    code = main.read()
exec(compile(code, sys.argv[0], "exec"), {"__name__": "__main__"})
'''
JAIL = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("set", "clear", "propagation", "userns_fd")]


def check(rc, what):
    if rc != 0:
        raise OSError(ctypes.get_errno(), f"sandbox jail: {what} failed")


def mount_setattr(path, flags, attr):  # syscall 442 on every Linux architecture but alpha
    check(libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), ctypes.c_char_p(path), ctypes.c_uint(flags),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


args = sys.argv[1:]
binds = []
while args[:1] == ["--bind"]:  # --bind SOURCE TARGET: a toolchain shown (read-only) at TARGET
    binds.append((args[1].encode(), args[2].encode()))
    args = args[3:]
work = os.getcwd().encode()
check(libc.mount(work, work, None, ctypes.c_ulong(4096), None), "bind mount of the work dir")  # MS_BIND
for source, target in binds:  # MS_BIND | MS_REC
    check(libc.mount(source, target, None, ctypes.c_ulong(4096 | 16384), None), "bind mount of a toolchain")
mount_setattr(b"/", 0x8000, MountAttr(set=1))  # AT_RECURSIVE, MOUNT_ATTR_RDONLY: every mount read-only
mount_setattr(work, 0, MountAttr(clear=1))     # but the work dir
os.chdir(work)
os.execv(args[0], args)
'''
