"""Tables of the orders role (MySQL/MariaDB in production), with the seed's names and foreign keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class OrdersBase(DeclarativeBase):
    pass


class CustomerRow(OrdersBase):
    __tablename__ = "table_customers"

    customer_customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_country: Mapped[str] = mapped_column(String(64), default="unknown")


class OrderRow(OrdersBase):
    __tablename__ = "table_orders"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("table_customers.customer_customer_id"), index=True
    )
    order_device: Mapped[str] = mapped_column(String(32), default="unknown")
    order_channel: Mapped[str] = mapped_column(String(32), default="unknown")
    order_main_category: Mapped[str] = mapped_column(String(64), default="unknown")
    order_n_items: Mapped[int] = mapped_column(Integer, default=0)
    order_basket_value: Mapped[float] = mapped_column(Float, default=0.0)
    order_shipping_fee: Mapped[float] = mapped_column(Float, default=0.0)
    order_discount: Mapped[float] = mapped_column(Float, default=0.0)
    order_order_total: Mapped[float] = mapped_column(Float, default=0.0)
    order_is_returned: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(OrdersBase):
    __tablename__ = "table_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    order_id: Mapped[str] = mapped_column(String(64), ForeignKey("table_orders.order_id"), index=True)
    customer_customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("table_customers.customer_customer_id"), index=True
    )


class PredictionRow(OrdersBase):
    __tablename__ = "table_predictions"

    event_id: Mapped[str] = mapped_column(String(64), ForeignKey("table_events.event_id"), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), ForeignKey("table_orders.order_id"), index=True)
    customer_customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("table_customers.customer_customer_id"), index=True
    )
    return_proba: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    predicted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
