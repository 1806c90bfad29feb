"""What a request may ask of the server, and the checks that enforce it before any model work.

Every refusal is an `APIError` with an HTTP status and an OpenAI-style error body, so that clients
see *why* (413 body too large, 400 image too large / audio or video too long / remote URL refused,
429 queue full) instead of a timeout or a 500. Remote URLs and local paths are off by default: a public
server must neither fetch arbitrary URLs for its callers (server-side request forgery) nor read
its own files on their behalf.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import http.client
import io
import ipaddress
import logging
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.sample import Sample

if TYPE_CHECKING:
    from ..encoders.media import VideoSampling

# The media readers (modrwkv.encoders.media) and the request reader (modrwkv.data.readers) are imported
# where they are used: the command line reads ServerLimits' defaults for `modrwkv serve --help`, which
# must not load the encoders (and torch) nor numpy.

log = logging.getLogger(__name__)


class APIError(Exception):
    """A refused request: HTTP `status` and the fields of OpenAI's error object."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after  # seconds, sent as the Retry-After header (OpenAI's clients wait that long)

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Why a local path is refused, whether it is missing or outside --allow-local-media's folder: one
# answer for both, so that the server's answers reveal nothing about files outside that folder.
LOCAL_MEDIA_REFUSED = "media file not found, or outside the server's media folder"


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """Per-request bounds. `local_media_dir`: local paths (and file:// URLs) are accepted only
    inside this folder; None refuses them all."""

    max_body_bytes: int = 32 * 2**20
    max_image_pixels: int = 2048 * 2048  # larger images cost seconds and hundreds of MB each: docs/serving.md
    max_audio_seconds: float = 600.0
    # /v1/audio/transcriptions cuts a recording at its pauses and asks each piece, so it may be longer
    # than a chat clip (which the model reads whole); the body limit bounds its file as well
    max_transcription_seconds: float = 3600.0
    max_video_seconds: float = 600.0  # decoding reads the whole clip, though only a few frames are kept
    max_media_items: int = 64
    max_tokens: int = 4096
    default_max_tokens: int = 512
    max_prompt_tokens: int = 65536
    allow_remote_media: bool = False
    allow_private_media_hosts: bool = False  # remote URLs may reach private, loopback and link-local addresses
    local_media_dir: Path | None = None
    remote_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_pixels", "max_media_items", "max_tokens", "default_max_tokens",
                     "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.max_audio_seconds, self.max_transcription_seconds, self.max_video_seconds,
               self.remote_timeout_seconds) <= 0:
            raise ValueError("max_audio_seconds, max_transcription_seconds, max_video_seconds and "
                             "remote_timeout_seconds must be positive")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens ({self.max_tokens})")
        if self.local_media_dir is not None:
            folder = Path(self.local_media_dir).resolve()
            if not folder.is_dir():
                problem = "is a file, not a folder" if folder.exists() else "does not exist"
                raise ValueError(f"local media folder {self.local_media_dir} {problem}")
            object.__setattr__(self, "local_media_dir", folder)


def check_media(sample: Sample, limits: ServerLimits, video: VideoSampling | None = None,
                audio_rate: int | None = None) -> None:
    """Fetches allowed remote items, confines local paths, and enforces the pixel and duration
    limits on a request's sample (`openai_to_sample`'s, whose meta says which content part each item
    came from); replaces the sample's items by what the encoders should read: each decoded here, once,
    after its header's size and length pass (an image as its picture, audio as its waveform at
    `audio_rate`, the model's audio encoder's, or at its own rate with None, a video as the frames
    `video` samples, the model's `VideoSampling`), so that damage found while decoding names its part
    too. Raises `APIError`. Videos follow the images' rules (same URL and path policy;
    each frame within the pixel limit)."""
    count = len(sample.images) + len(sample.audios) + len(sample.videos)
    if count > limits.max_media_items:
        raise APIError(400, f"the request has {count} media items; this server accepts at most {limits.max_media_items}",
                       code="too_many_media_items")
    sample.images[:] = [_check_image(_resolve(item, "image", _name(sample, "image", i), limits),
                                     _name(sample, "image", i), limits) for i, item in enumerate(sample.images)]
    sample.audios[:] = [_check_audio(_resolve(item, "audio", _name(sample, "audio", i), limits),
                                     _name(sample, "audio", i), limits, audio_rate)
                        for i, item in enumerate(sample.audios)]
    sample.videos[:] = [_check_video(_resolve(item, "video", _name(sample, "video", i), limits),
                                     _name(sample, "video", i), limits, video)
                        for i, item in enumerate(sample.videos)]


def _name(sample: Sample, modality: str, index: int) -> str:
    """How a refusal names a media item: by the request's content part it came from, which
    `openai_to_sample` records ("the audio in messages[0].content[1]")."""
    return f"the {modality} in {sample.meta['media_parts'][modality][index]}"


def _resolve(item: Any, modality: str, name: str, limits: ServerLimits) -> Any:
    """Bytes for remote URLs (fetched here, if allowed), a confined path for local files; `name`
    says which part the item came from."""
    if not isinstance(item, str):
        return item
    if item.startswith(("http://", "https://")):
        if not limits.allow_remote_media:  # the reader refuses them first; this guards other callers
            raise APIError(400, "remote media URLs are disabled on this server", code="remote_media_disabled")
        return _fetch(item, name, limits)
    if limits.local_media_dir is None:
        raise APIError(400, "local file paths are disabled on this server", code="local_media_disabled")
    path = Path(item).resolve()
    if not path.is_relative_to(limits.local_media_dir):
        # the words the reader's refusal of a missing file gets: a client cannot tell which files exist outside
        raise APIError(400, LOCAL_MEDIA_REFUSED, code="local_media_refused", param="messages")
    return str(path)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s), so a remote URL cannot bounce to another scheme; a refused
    one is a URLError that says the target's scheme (urllib's own refusal, of file: and a few
    others, is an HTTPError that quotes the whole target)."""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        target = urllib.parse.urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        scheme = urllib.parse.urlsplit(target).scheme
        if scheme not in ("http", "https"):
            fp.close()
            raise urllib.error.URLError(f"it redirects to a non-http(s) URL ({scheme}:), which is not followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _request(url: str) -> urllib.request.Request:
    """The GET for `url`. Credentials in it ("user:password@", which urllib would take for part of
    the host name) go as HTTP Basic authentication, to that host only: not along redirects."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(),
                                     headers={"User-Agent": "modrwkv"})
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_unredirected_header("Authorization",
                                        "Basic " + base64.b64encode(credentials.encode()).decode("ascii"))
    return request


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the low 32 bits are an IPv4 address


def _is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is on the public internet: not loopback, private, link-local (169.254.169.254,
    the cloud metadata service), unspecified, multicast or reserved; an IPv6 address that carries an
    IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64) is judged by that IPv4 address as well."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, address.teredo and address.teredo[1],
                    ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None]
        if not all(_is_public_address(inner) for inner in embedded if inner):
            return False
    return address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                      or address.is_multicast or address.is_reserved or address.is_unspecified)


class _PrivateHost(Exception):
    """A remote URL's host (or a redirect target's) resolves to an address this server does not fetch."""


def _screened_addresses(host: str, port: int, allow_private: bool) -> list[tuple[Any, ...]]:
    """`host`'s addresses, resolved once (getaddrinfo, which also reads short and decimal IPv4 forms
    such as 2130706433 = 127.0.0.1): (family, type, proto, sockaddr) for each. Unless `allow_private`,
    raises `_PrivateHost` when any of them is not public, before any connection; a name that does not
    resolve is a URLError, as urllib's own would be."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise urllib.error.URLError(exc) from None
    addresses = [(family, kind, proto, sockaddr) for family, kind, proto, _, sockaddr in found]
    if not allow_private and not all(
            _is_public_address(ipaddress.ip_address(sockaddr[0].partition("%")[0])) for *_, sockaddr in addresses):
        raise _PrivateHost(host)
    return addresses


def _connect_pinned(addresses: list[tuple[Any, ...]], timeout: float | None) -> socket.socket:
    """A TCP connection to the first of `addresses` (already screened) that accepts one: the very
    addresses that were checked, so a name that resolves differently a moment later (DNS rebinding)
    cannot redirect the connection."""
    error: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error if error is not None else OSError("the host name has no address")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to `addresses` (the screened ones of its host) instead of resolving the host again;
    a connection to a proxy (another host than the URL's: http_proxy/https_proxy) goes as usual."""

    def __init__(self, host: str, *args: Any, target: str, addresses: list[tuple[Any, ...]], **kwargs: Any) -> None:
        super().__init__(host, *args, **kwargs)
        self._target, self._addresses = target, addresses
        self._create_connection = self._connect  # http.client's hook, set per instance by its __init__

    def _connect(self, address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                 source_address: Any = None) -> socket.socket:
        if address[0] != self._target:  # a proxy, set by the operator
            return socket.create_connection(address, timeout, source_address)
        return _connect_pinned(self._addresses, None if timeout is socket._GLOBAL_DEFAULT_TIMEOUT else timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    """As `_PinnedHTTPConnection`; TLS (SNI and the certificate check) still names the URL's host."""


class _ScreenedHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """Opens http(s) URLs, the first and every redirect's, only at screened addresses
    (`_screened_addresses`), connecting to the very address that was checked."""

    def __init__(self, allow_private: bool) -> None:
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self)
        self.allow_private = allow_private

    def _open(self, req: urllib.request.Request, connection: type[_PinnedHTTPConnection], **kwargs: Any) -> Any:
        parts = urllib.parse.urlsplit(req.full_url)
        if not parts.hostname:
            raise urllib.error.URLError("no host given")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = _screened_addresses(parts.hostname, port, self.allow_private)
        return self.do_open(functools.partial(connection, target=parts.hostname, addresses=addresses), req, **kwargs)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self._open(req, _PinnedHTTPConnection)

    def https_open(self, req: urllib.request.Request) -> Any:
        return self._open(req, _PinnedHTTPSConnection, context=self._context)


def _fetch(url: str, name: str, limits: ServerLimits) -> bytes:
    """The bytes at `url` (http(s) only, redirects included), at most `max_body_bytes` of them; a
    failure says which part asked for what, and why in plain words (`_fetch_failure`). Unless
    `allow_private_media_hosts`, a host that resolves to a private, loopback or link-local address
    (the URL's or a redirect's) is refused before any connection, in words that do not tell whether
    anything listens there. Neither the answer nor the log shows the URL's credentials; the log drops
    its query string as well."""
    from ..data.readers.openai_chat import redact_url

    shown = redact_url(url)
    opener = urllib.request.build_opener(_HttpOnlyRedirects, _ScreenedHandler(limits.allow_private_media_hosts))
    try:
        with opener.open(_request(url), timeout=limits.remote_timeout_seconds) as response:
            data = response.read(limits.max_body_bytes + 1)
    except _PrivateHost as exc:
        where = ("its host resolves" if exc.args[0] == urllib.parse.urlsplit(url).hostname
                 else "it redirects to a host that resolves")
        log.info("refused remote media from %s: a private or local address", redact_url(url, keep_query=False))
        raise APIError(400, f"{name} cannot be fetched from {shown}: {where} to a private or local address, which "
                       "this server does not fetch", code="remote_media_refused") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise APIError(400, f"{name} cannot be fetched from {shown}: {_fetch_failure(exc, limits)}",
                       code="bad_remote_media") from None
    if len(data) > limits.max_body_bytes:
        raise APIError(413, f"{name} cannot be fetched from {shown}: it is larger than this server's "
                       f"{limits.max_body_bytes} bytes", code="media_too_large")
    log.info("fetched %d bytes of remote media from %s", len(data), redact_url(url, keep_query=False))
    return data


def _fetch_failure(exc: BaseException, limits: ServerLimits) -> str:
    """Why a fetch failed, in plain words instead of urllib's ("<urlopen error [Errno 111]
    Connection refused>"): the HTTP status, a refused connection, an unknown host, a timeout."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the remote server answered HTTP status {exc.code}" + (f" ({exc.reason})" if exc.reason else "")
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason  # what went wrong underneath: the socket's error
    elif isinstance(exc, urllib.error.URLError):
        return str(exc.reason)  # e.g. "unknown url type"
    if isinstance(exc, TimeoutError):
        return f"no answer within {limits.remote_timeout_seconds:g} s (the server's remote media timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused (nothing listens at that host and port)"
    if isinstance(exc, socket.gaierror):
        return f"the host name cannot be resolved ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS connection failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc)


def _check_image(item: Any, name: str, limits: ServerLimits) -> Any:
    if not isinstance(item, (bytes, str)):
        return item
    from PIL import UnidentifiedImageError

    from ..encoders.media import ImageTooLarge, MediaError, decoder_message, load_image, open_image

    try:  # opening reads only the header: the size is known before any pixel is decoded
        with open_image(io.BytesIO(item) if isinstance(item, bytes) else item, name) as image:
            width, height = image.size
    except ImageTooLarge as exc:  # beyond the process's limit, which the server raised to its own (create_app)
        found = (f"{exc.size[0]}x{exc.size[1]} = {exc.pixels}" if exc.size is not None else str(exc.pixels)
                 if exc.pixels is not None else f"more than {2 * exc.limit}")
        raise APIError(400, f"{name} has {found} pixels; {_pixel_limit(limits)}", code="image_too_large") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise APIError(400, f"{name} cannot be decoded: {decoder_message(exc, 'the image')}",
                       code="bad_image") from None
    if width * height > limits.max_image_pixels:
        raise APIError(400, f"{name} has {width}x{height} = {width * height} pixels; {_pixel_limit(limits)}",
                       code="image_too_large")
    try:  # within the limit: decoded here, where a file cut short after a sound header is still named by its part
        return load_image(item)
    except MediaError as exc:
        raise APIError(400, f"{name} cannot be decoded: {exc.reason}", code="bad_image") from None


def _pixel_limit(limits: ServerLimits) -> str:
    return (f"this server accepts at most {limits.max_image_pixels} (its operator can raise that with "
            "--max-image-pixels; or scale the image down)")


def _check_audio(item: Any, name: str, limits: ServerLimits, sample_rate: int | None) -> Any:
    if not isinstance(item, (tuple, bytes, str)):
        return item
    return check_audio(item, name, limits.max_audio_seconds, sample_rate=sample_rate)


def check_audio(item: Any, name: str, max_seconds: float, limit_option: str | None = None,
                param: str | None = None, sample_rate: int | None = None) -> Any:
    """An audio item decoded to (waveform, rate), refused (`APIError`) when it lasts more than
    `max_seconds` (before any sample is decoded) or does not decode; `name` says where it came
    from, `limit_option` which server option raises the limit (named in the refusal), `param` the
    request field the refusal names. An encoded item is resampled to `sample_rate` (what the model
    reads) as it decodes, holding its samples at that rate rather than at the file's (600 s at
    192 kHz peaked at 1.4 GB decoded at its own rate, 77 MB so: docs/serving.md); None keeps the
    file's. A decoded `(waveform, rate)` item is returned as it is."""
    from ..encoders.media import AudioTooLong, MediaError, audio_seconds, decode_audio

    try:  # an encoded item is read once: its header's length is checked before any sample is decoded
        if isinstance(item, tuple):
            seconds = audio_seconds(item)
            if seconds > max_seconds:
                raise AudioTooLong(name, seconds, max_seconds)
            return item
        return decode_audio(item, max_seconds=max_seconds, sample_rate=sample_rate)
    except AudioTooLong as exc:
        option = f" (its operator sets {limit_option})" if limit_option else ""
        lasts = f"at least {exc.seconds:.2f}" if exc.at_least else f"{exc.seconds:.1f}"
        raise APIError(400, f"{name} lasts {lasts} s; this server accepts at most "
                       f"{max_seconds:g} s{option}", code="audio_too_long", param=param) from None
    except MediaError as exc:  # decoded here, where a file cut short after a sound header is named by its part
        raise APIError(400, f"{name} cannot be decoded: {exc.reason}", code="bad_audio", param=param) from None


def _check_video(item: Any, name: str, limits: ServerLimits, sampling: VideoSampling | None) -> Any:
    if not isinstance(item, (bytes, str)):
        return item
    from ..encoders.media import MediaError, VideoTooLong, load_video
    from ..extras import MissingExtraError, require

    try:
        av = require("av", "video", "video input")
    except MissingExtraError as exc:
        raise APIError(501, f"this server cannot read video: {exc}", code="video_extra_missing") from None
    try:  # the container's header: size and length are known before any frame is decoded
        with av.open(io.BytesIO(item) if isinstance(item, bytes) else item) as container:
            if not container.streams.video:
                raise APIError(400, f"{name} has no video stream", code="bad_video")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if stream.duration is not None and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / 1e6  # av.time_base: microseconds
    except av.FFmpegError as exc:
        raise APIError(400, f"{name} cannot be decoded: {exc.strerror or 'unknown container'}",
                       code="bad_video") from None
    if width * height > limits.max_image_pixels:
        raise APIError(400, f"{name} has {width}x{height} = {width * height} pixels per frame; "
                       f"{_pixel_limit(limits)}", code="video_too_large")
    if seconds > limits.max_video_seconds:
        raise APIError(400, f"{name} lasts {seconds:.1f} s; this server accepts at most "
                       f"{limits.max_video_seconds:g} s", code="video_too_long")
    try:  # within the limits: its frames decoded here, where damage past the header is named by its part
        # the length checked again as the packets are read: a container may state none (a live stream's,
        # a browser's recording) or a wrong one
        return load_video(item, sampling, max_seconds=limits.max_video_seconds)
    except VideoTooLong as exc:
        raise APIError(400, f"{name} lasts at least {exc.seconds:.2f} s; this server accepts at most "
                       f"{limits.max_video_seconds:g} s", code="video_too_long") from None
    except MediaError as exc:
        raise APIError(400, f"{name} cannot be decoded: {exc.reason}", code="bad_video") from None
