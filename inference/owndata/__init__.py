"""The user's own data: image folders, arrays (``.npy``, ``.npz``, ``.pt``) and tables (CSV,
Parquet) with missing values, read into the lab's :class:`~inference.data.TensorData`.
"""
