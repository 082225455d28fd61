"""The light modelplex client: grpcio + protobuf, no torch.

    from modelplex_client import Client
    with Client("127.0.0.1:50051") as client:
        for top in client.classify(["cat.jpg"], model="resnet18", top_k=3):
            print([(c.label, c.score) for c in top])

The generated messages and stubs are in :mod:`modelplex_client.pb`.
"""

from modelplex_client._requests import ImageLike, ServerError
from modelplex_client.aio import AsyncClient
from modelplex_client.client import Client

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "ImageLike", "ServerError", "__version__"]
