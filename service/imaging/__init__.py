"""Pure Pillow functions: bytes in, bytes out. No Redis, no HTTP.

formats.py names what they speak, frames.py counts frames up to a limit, geometry.py plans each
output, pipeline.py decodes once and derives every output, colour.py says which profile each
carries, encoding.py writes each one.
"""

from service.imaging.decoding import Decode as Decode
from service.imaging.formats import BUDGET_WEBP_EFFORT as BUDGET_WEBP_EFFORT
from service.imaging.formats import DEFAULT_WEBP_EFFORT as DEFAULT_WEBP_EFFORT
from service.imaging.formats import GRAVITIES as GRAVITIES
from service.imaging.formats import INPUT_FORMATS as INPUT_FORMATS
from service.imaging.formats import MIN_QUALITY as MIN_QUALITY
from service.imaging.formats import MODES as MODES
from service.imaging.formats import OUTPUT_FORMATS as OUTPUT_FORMATS
from service.imaging.formats import WEBP_EFFORTS as WEBP_EFFORTS
from service.imaging.formats import EncodedImage as EncodedImage
from service.imaging.formats import ImageInfo as ImageInfo
from service.imaging.formats import ImageRejected as ImageRejected
from service.imaging.formats import OutputFormat as OutputFormat
from service.imaging.formats import OutputSpec as OutputSpec
from service.imaging.pipeline import inspect as inspect
from service.imaging.pipeline import open_image as open_image
from service.imaging.pipeline import render as render
from service.imaging.pipeline import render_bytes as render_bytes
from service.imaging.pipeline import transform as transform
